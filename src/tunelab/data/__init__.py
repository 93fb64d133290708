"""Reading labelled data files and splitting them."""
