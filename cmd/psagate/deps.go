package main

// Blank imports keep the chosen dependencies in go.mod while the packages
// that use them are being written. Removed once every one has a real user.
import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	_ "github.com/emersion/go-message/mail"
	_ "github.com/emersion/go-smtp"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/text/cases"
)

func main() {}
