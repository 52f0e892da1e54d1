from ringkv.cli import main

main()
