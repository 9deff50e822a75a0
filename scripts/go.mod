module github.com/digestline/digestline/scripts

go 1.26.0
