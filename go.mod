module github.com/baton-sh/baton

go 1.26.8
