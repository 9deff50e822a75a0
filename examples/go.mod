module github.com/digestline/digestline/examples

go 1.26.0
