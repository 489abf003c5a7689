// Command gen writes docs/QUICKSTART.md from the OpenAPI document of package
// openapi:
//
//	go run ./cmd/releaseradar/internal/openapi/gen [-o docs/QUICKSTART.md]
//
// (go generate ./cmd/releaseradar/internal/openapi runs it with the right path.)
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/openapi"
)

func main() {
	out := flag.String("o", openapi.QuickstartPath, "the file to write")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	doc, err := openapi.Load()
	if err != nil {
		return err
	}
	b, err := openapi.Quickstart(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
