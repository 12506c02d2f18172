from d2lexp.search.command import main

main()
