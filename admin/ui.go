package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// The dashboard: plain HTML, CSS and JavaScript, embedded, no CDN and no
// build step. It fetches the API with the token the admin gives it (the
// `sipedge dashboard` command prints a link that carries it after '#',
// which browsers never send to the server).
//
//go:embed ui
var uiFiles embed.FS

// uiCSP allows the dashboard its own files and API only: no inline
// script, no other origin. SIP headers shown in it (User-Agent, Contact)
// are attacker-controlled text; the dashboard writes them with
// textContent, and this policy is the second line of defence.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", uiCSP)
		if r.URL.Path == "/" {
			http.ServeFileFS(w, r, sub, "index.html")
			return
		}
		http.StripPrefix("/ui", files).ServeHTTP(w, r)
	})
}
