from thinkrank.cli import main

main()
