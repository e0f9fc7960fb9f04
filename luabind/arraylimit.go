package luabind

import lua "github.com/yuin/gopher-lua"

// maxArrayIndex bounds the keys gopher-lua keeps in a table's array part. A store
// past the array's end fills the gap with nils one append at a time inside one Go
// call, which no budget interrupts: with gopher-lua's default (2^26) one line,
// `t[67108863] = 1`, allocated 5.9 GiB and ran 3.5–29 s past a 30 ms budget. At
// 2^16 the worst gap is 1 MiB of slots, a few ms; larger integer keys go to the
// table's hash part, where a store costs what any other key does.
//
// The price: `#t` counts the array part, so a sequence built by `t[i] = v` past
// 65,535 entries has `#t == 65535` (table.insert(t, v) appends to the array part and
// keeps # exact). REFERENCE.md's Limits says so.
const maxArrayIndex = 1 << 16

// lua.MaxArrayIndex is process-wide and read by every running state, so it is
// lowered once, before any VM exists, and never raised (a host that set it lower
// keeps its value).
func init() {
	if lua.MaxArrayIndex > maxArrayIndex {
		lua.MaxArrayIndex = maxArrayIndex
	}
}
