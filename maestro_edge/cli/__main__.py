from maestro_edge.cli import main

main()
