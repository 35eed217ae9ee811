from lvlmsim.cli import main

main()
