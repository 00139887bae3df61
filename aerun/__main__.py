from aerun.cli import main

main()
