// A bare mutating webhook in Go's net/http: it echoes the request's uid with a fixed
// JSONPatch (-patch-file: base64 text, e.g. the patch ours answers, so the API server
// applies the same patch on both sides). bench/webhook.py registers it next to ours to
// show what the API server's webhook call costs with the fastest common server stack
// (not a product part).
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
)

type review struct {
	Request struct {
		UID string `json:"uid"`
	} `json:"request"`
}

// base64 of [{"op":"add","path":"/metadata/labels/x","value":"y"}] unless -patch-file
var patch = "W3sib3AiOiAiYWRkIiwgInBhdGgiOiAiL21ldGFkYXRhL2xhYmVscy94IiwgInZhbHVlIjogInkifV0="

func mutate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var in review
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, _ := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"response": map[string]any{
			"uid": in.Request.UID, "allowed": true, "patchType": "JSONPatch", "patch": patch,
		},
	})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	cert := flag.String("cert", "", "TLS certificate file")
	key := flag.String("key", "", "TLS key file")
	patchFile := flag.String("patch-file", "", "answer this base64 JSONPatch instead")
	flag.Parse()
	if *patchFile != "" {
		text, err := os.ReadFile(*patchFile)
		if err != nil {
			log.Fatal(err)
		}
		patch = strings.TrimSpace(string(text))
	}
	http.HandleFunc("/", mutate)
	log.Fatal(http.ListenAndServeTLS(*addr, *cert, *key, nil))
}
