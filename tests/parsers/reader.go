// reader reads a login the way a Go legacy app would (tests/test_reading_parsers.py).
//
//	reader form CONTENT-TYPE QUERY NAME...  body on stdin: prints r.FormValue(NAME) for each
//	reader json                             body on stdin: prints the Login struct it decodes
package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
)

type Login struct {
	Email    string
	Username string
	Password string
	Log      string
	Pwd      string
	Action   string
	User     struct {
		Email    string
		Password string
	}
}

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		panic(err)
	}
	out := json.NewEncoder(os.Stdout)
	if os.Args[1] == "json" {
		var login Login
		if err := json.Unmarshal(body, &login); err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			return
		}
		out.Encode(login)
		return
	}
	r, err := http.NewRequest("POST", "/login?"+os.Args[3], bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	r.Header.Set("Content-Type", os.Args[2])
	read := map[string]string{}
	for _, name := range os.Args[4:] {
		read[name] = r.FormValue(name)
	}
	out.Encode(read)
}
