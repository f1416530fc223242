// Command etcd is upstream etcd's own entry point (etcdmain), built from the
// published go.etcd.io/etcd/server/v3 module instead of a release download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
