// Command hello is the demo payload: a static binary that digestline ships
// as a FROM-scratch image.
package main

import "fmt"

func main() { fmt.Println("hello from an image shipped by digest") }
