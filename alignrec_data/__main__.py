from alignrec_data.cli import main

main()
