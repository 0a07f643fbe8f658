// Command netcheck is the test node's network probe, a static program for FROM-scratch images:
//
//	netcheck serve ADDR         answer every HTTP request with "netcheck HOSTNAME uid=UID rootfs=…"
//	                            (read-only or writable: whether it can create a file in /)
//	netcheck probe NAME URL     resolve NAME (through the pod's /etc/resolv.conf) and GET URL,
//	                            retrying both for up to 60 s; print what was seen, exit 0 on success
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		host, _ := os.Hostname()
		rootfs := "read-only"
		if f, err := os.CreateTemp("/", "netcheck-"); err == nil {
			rootfs = "writable"
			f.Close()
			os.Remove(f.Name())
		}
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "netcheck %s uid=%d rootfs=%s\n", host, os.Getuid(), rootfs)
		})
		fmt.Fprintln(os.Stderr, http.ListenAndServe(os.Args[2], nil))
		os.Exit(1)
	}
	if len(os.Args) == 4 && os.Args[1] == "probe" {
		os.Exit(probe(os.Args[2], os.Args[3]))
	}
	fmt.Fprintln(os.Stderr, "usage: netcheck serve ADDR | netcheck probe NAME URL")
	os.Exit(2)
}

func probe(name, url string) int {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 3 * time.Second}
	var addrs []string
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		addrs, lastErr = net.DefaultResolver.LookupHost(ctx, name)
		cancel()
		if lastErr == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if lastErr != nil {
		fmt.Printf("lookup %s failed: %v\n", name, lastErr)
		return 1
	}
	fmt.Printf("resolved %s to %v\n", name, addrs)
	for time.Now().Before(deadline) {
		var resp *http.Response
		resp, lastErr = client.Get(url)
		if lastErr == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("GET %s: %d %s", url, resp.StatusCode, body)
			return 0
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("GET %s failed: %v\n", url, lastErr)
	return 1
}
