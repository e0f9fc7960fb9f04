// Package examples holds the runnable examples, one command per folder, and the test
// that every one of them answers -h with its usage and flags.
package examples
