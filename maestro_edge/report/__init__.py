"""HTML report of a sweep of ``maestro-edge fit`` outputs (needs the ``report`` extra: matplotlib).

    from maestro_edge.report import write_report
    write_report(Path("out"))          # -> out/report.html (the figures embedded: nothing else is written)
"""

from maestro_edge.report.fits import FIGURES, Fit, load_fits
from maestro_edge.report.html import write_report

__all__ = ["FIGURES", "Fit", "load_fits", "write_report"]
