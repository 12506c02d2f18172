from d2lexp.train import main

if __name__ == "__main__":
    main()
