// Command verify checks provledger's signed checkpoints, Merkle proofs and tiles with
// the Go reference implementations of the formats (golang.org/x/mod/sumdb/note for
// C2SP signed notes, golang.org/x/mod/sumdb/tlog for RFC 6962/9162 hashing, proofs and
// tiles), so that none of provledger's own code takes part in the verdict.
//
// It reads one JSON document on stdin:
//
//	{
//	  "verifier_key": "<origin>+<8 hex>+<base64(0x01 || pubkey)>",
//	  "checkpoint": "<signed note>",              // the latest checkpoint
//	  "checkpoints": ["<signed note>", ...],      // optional, earlier checkpoints
//	  "cosigner_keys": ["<name>+<hex>+<b64>"],     // optional; type 0x01 or 0x04 keys
//	  "inclusion": [{"index", "tree_size", "leaf" (base64), "leaf_hash"? (hex),
//	                 "root"? (hex), "hashes": [hex]}],
//	  "consistency": [{"first", "second", "first_root"? (hex), "second_root"? (hex),
//	                   "hashes": [hex]}],
//	  "leaves": ["<base64 leaf>", ...],          // optional: entries 0..n-1 of the log
//	  "tiles": [{"level", "index", "width", "entries"?, "data" (base64)}]  // optional
//	}
//
// Roots come from the signed checkpoints whenever one of that tree size was given (a
// "root" or "*_root" field must then agree with it); otherwise from those fields, or
// else computed by tlog.TreeHash over "leaves" (so proofs at sizes no checkpoint was
// signed for can be checked too).
// Every cosigner key must have a valid cosignature/v1 line on "checkpoint".
// Given "leaves", the roots of every signed checkpoint are recomputed from them, and
// hash tiles are compared with tlog.ReadTileData over the same leaves; given tiles,
// every signed tree is read back through tlog.TileHashReader, which authenticates the
// tiles against the signed root the way the Go checksum-database client does.
//
// It prints one JSON line {"ok", counts..., "failures": [...]} and exits 0 when
// everything verified, 1 when anything failed (each failure names its item), and 2
// when stdin is not such a document.
//
// Build (no modules, no network; the Debian package golang-golang-x-mod-dev provides
// the source): GO111MODULE=off GOPATH=/usr/share/gocode go build -o verify verify.go
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is the C2SP tlog-tiles tile height: 256 hashes per full tile.
const tileHeight = 8

type inclusionItem struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	Leaf     string   `json:"leaf"`
	LeafHash string   `json:"leaf_hash"`
	Root     string   `json:"root"`
	Hashes   []string `json:"hashes"`
}

type consistencyItem struct {
	First      int64    `json:"first"`
	Second     int64    `json:"second"`
	FirstRoot  string   `json:"first_root"`
	SecondRoot string   `json:"second_root"`
	Hashes     []string `json:"hashes"`
}

type tileItem struct {
	Level   int    `json:"level"`
	Index   int64  `json:"index"`
	Width   int    `json:"width"`
	Entries bool   `json:"entries"`
	Data    string `json:"data"`
}

type input struct {
	VerifierKey  string            `json:"verifier_key"`
	Checkpoint   string            `json:"checkpoint"`
	Checkpoints  []string          `json:"checkpoints"`
	CosignerKeys []string          `json:"cosigner_keys"`
	Inclusion    []inclusionItem   `json:"inclusion"`
	Consistency  []consistencyItem `json:"consistency"`
	Leaves       []string          `json:"leaves"`
	Tiles        []tileItem        `json:"tiles"`
}

type result struct {
	OK           bool     `json:"ok"`
	Checkpoints  int      `json:"checkpoints"`
	Cosignatures int      `json:"cosignatures"`
	Inclusion    int      `json:"inclusion"`
	Consistency  int      `json:"consistency"`
	Leaves       int      `json:"leaves"`
	Tiles        int      `json:"tiles"`
	TreesRead    int      `json:"trees_read_from_tiles"`
	Failures     []string `json:"failures"`
}

// checkpoint is a parsed C2SP tlog-checkpoint body.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

type verifier struct {
	in     input
	res    result
	log    note.Verifier
	signed map[int64]tlog.Hash // tree size -> root, from verified checkpoints
	leaves [][]byte
	stored []tlog.Hash          // tlog stored hashes of leaves, when given
	tiles  map[tlog.Tile][]byte // hash tiles by coordinates
}

func (v *verifier) fail(format string, args ...any) {
	v.res.Failures = append(v.res.Failures, fmt.Sprintf(format, args...))
}

// emptyRoot is the RFC 9162 root of the empty tree, SHA-256 of nothing. (tlog.TreeHash
// defines size 0 as all zeros instead, so size 0 is checked here, never by tlog.)
var emptyRoot = tlog.Hash(sha256.Sum256(nil))

func parseHash(s string) (tlog.Hash, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("not hex: %q", s)
	}
	if len(b) != tlog.HashSize {
		return tlog.Hash{}, fmt.Errorf("%d bytes, expected %d: %q", len(b), tlog.HashSize, s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h, nil
}

func parseHashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(list))
	for i, s := range list {
		h, err := parseHash(s)
		if err != nil {
			return nil, fmt.Errorf("hashes[%d]: %v", i, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// parseCheckpoint parses a tlog-checkpoint body: origin, decimal size, base64 root,
// then optional non-empty extension lines.
func parseCheckpoint(text string) (checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return checkpoint{}, fmt.Errorf("body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, fmt.Errorf("body has %d lines, expected at least 3", len(lines))
	}
	for i, l := range lines[3:] {
		if l == "" {
			return checkpoint{}, fmt.Errorf("extension line %d is empty", i+1)
		}
	}
	if lines[0] == "" {
		return checkpoint{}, fmt.Errorf("empty origin line")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("tree size %q is not a canonical decimal", lines[1])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("root hash %q is not base64 of 32 bytes", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return checkpoint{origin: lines[0], size: size, root: h}, nil
}

// cosigner is a witness key for C2SP tlog-cosignature (cosignature/v1) lines.
type cosigner struct {
	vkey  string
	name  string
	keyID uint32 // of the type 0x04 key
	pub   ed25519.PublicKey
}

func keyHash(name string, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// parseCosigner accepts a type 0x04 key, or the type 0x01 form provledger lists for
// its nodes, whose cosignatures use the 0x04 key ID of the same public key.
func parseCosigner(vkey string) (cosigner, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || len(parts[1]) != 8 {
		return cosigner{}, fmt.Errorf("not <name>+<8 hex>+<base64>")
	}
	id, err1 := strconv.ParseUint(parts[1], 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(key) != 1+ed25519.PublicKeySize {
		return cosigner{}, fmt.Errorf("malformed key id or key")
	}
	if uint32(id) != keyHash(parts[0], key) {
		return cosigner{}, fmt.Errorf("key id %s does not match the key", parts[1])
	}
	if key[0] != 0x01 && key[0] != 0x04 {
		return cosigner{}, fmt.Errorf("key type 0x%02x, expected 0x01 or 0x04", key[0])
	}
	pub := ed25519.PublicKey(key[1:])
	return cosigner{
		vkey:  vkey,
		name:  parts[0],
		keyID: keyHash(parts[0], append([]byte{0x04}, pub...)),
		pub:   pub,
	}, nil
}

// checkCosignature verifies sig (key ID || 8-byte timestamp || Ed25519 signature) over
// "cosignature/v1\ntime <t>\n" followed by the checkpoint body.
func (c cosigner) check(text string, sig note.Signature) error {
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil || len(raw) != 4+8+ed25519.SignatureSize {
		return fmt.Errorf("cosignature is not 76 bytes of base64")
	}
	ts := binary.BigEndian.Uint64(raw[4:12])
	if ts > 1<<63-1 {
		return fmt.Errorf("timestamp %d exceeds 2^63-1", ts)
	}
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", ts, text)
	if !ed25519.Verify(c.pub, []byte(msg), raw[12:]) {
		return fmt.Errorf("invalid cosignature (timestamp %d)", ts)
	}
	return nil
}

func (v *verifier) openCheckpoints(cosigners []cosigner) {
	notes := append([]string{v.in.Checkpoint}, v.in.Checkpoints...)
	for i, text := range notes {
		what := "checkpoint"
		if i > 0 {
			what = fmt.Sprintf("checkpoints[%d]", i-1)
		}
		n, err := note.Open([]byte(text), note.VerifierList(v.log))
		if err != nil {
			v.fail("%s: note.Open: %v", what, err)
			continue
		}
		cp, err := parseCheckpoint(n.Text)
		if err != nil {
			v.fail("%s: %v", what, err)
			continue
		}
		if cp.origin != v.log.Name() {
			v.fail("%s: origin %q is not the key name %q", what, cp.origin, v.log.Name())
			continue
		}
		if cp.size == 0 && cp.root != emptyRoot {
			v.fail("%s: the empty tree's root is %x, expected SHA-256(\"\") %x", what, cp.root, emptyRoot)
			continue
		}
		if root, ok := v.signed[cp.size]; ok && root != cp.root {
			v.fail("%s: two signed roots for tree size %d: %x and %x", what, cp.size, root, cp.root)
			continue
		}
		v.signed[cp.size] = cp.root
		v.res.Checkpoints++
		for _, c := range cosigners {
			found := false
			for _, sig := range n.UnverifiedSigs {
				if sig.Name != c.name || sig.Hash != c.keyID {
					continue
				}
				found = true
				if err := c.check(n.Text, sig); err != nil {
					v.fail("%s: cosigner %s: %v", what, c.name, err)
				} else {
					v.res.Cosignatures++
				}
			}
			if !found && i == 0 {
				v.fail("%s: no cosignature/v1 line by %s+%08x", what, c.name, c.keyID)
			}
		}
	}
}

// sizes lists the signed tree sizes in increasing order (failures in a stable order).
func (v *verifier) sizes() []int64 {
	out := make([]int64, 0, len(v.signed))
	for size := range v.signed {
		out = append(out, size)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// root returns the root for a tree size: the signed one, checked against a given one,
// else the given one, else tlog's root over the leaves.
func (v *verifier) root(size int64, given string) (tlog.Hash, error) {
	signed, ok := v.signed[size]
	if given == "" {
		switch {
		case ok:
			return signed, nil
		case size == 0:
			return emptyRoot, nil
		case v.leaves != nil && size <= int64(len(v.leaves)):
			return tlog.TreeHash(size, tlog.HashReaderFunc(v.readStored))
		}
		return tlog.Hash{}, fmt.Errorf("no signed checkpoint, no leaves and no root given for tree size %d", size)
	}
	h, err := parseHash(given)
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("root: %v", err)
	}
	if ok && h != signed {
		return tlog.Hash{}, fmt.Errorf("root %x is not the signed root %x of tree size %d", h, signed, size)
	}
	return h, nil
}

func (v *verifier) checkInclusion() {
	for i, item := range v.in.Inclusion {
		what := fmt.Sprintf("inclusion[%d] (index %d, tree size %d)", i, item.Index, item.TreeSize)
		leaf, err := base64.StdEncoding.DecodeString(item.Leaf)
		if err != nil {
			v.fail("%s: leaf is not base64", what)
			continue
		}
		h := tlog.RecordHash(leaf)
		if item.LeafHash != "" {
			given, err := parseHash(item.LeafHash)
			if err != nil || given != h {
				v.fail("%s: leaf_hash %s is not RecordHash(leaf) %x", what, item.LeafHash, h)
				continue
			}
		}
		if v.leaves != nil && item.Index >= 0 && item.Index < int64(len(v.leaves)) &&
			!bytes.Equal(leaf, v.leaves[item.Index]) {
			v.fail("%s: leaf differs from leaves[%d]", what, item.Index)
			continue
		}
		root, err := v.root(item.TreeSize, item.Root)
		if err != nil {
			v.fail("%s: %v", what, err)
			continue
		}
		proof, err := parseHashes(item.Hashes)
		if err != nil {
			v.fail("%s: %v", what, err)
			continue
		}
		if err := tlog.CheckRecord(tlog.RecordProof(proof), item.TreeSize, root, item.Index, h); err != nil {
			v.fail("%s: tlog.CheckRecord: %v", what, err)
			continue
		}
		v.res.Inclusion++
	}
}

func (v *verifier) checkConsistency() {
	for i, item := range v.in.Consistency {
		what := fmt.Sprintf("consistency[%d] (%d -> %d)", i, item.First, item.Second)
		if item.First < 0 || item.First > item.Second {
			v.fail("%s: first must be between 0 and second", what)
			continue
		}
		firstRoot, err1 := v.root(item.First, item.FirstRoot)
		secondRoot, err2 := v.root(item.Second, item.SecondRoot)
		if err1 != nil || err2 != nil {
			v.fail("%s: first: %v; second: %v", what, err1, err2)
			continue
		}
		proof, err := parseHashes(item.Hashes)
		if err != nil {
			v.fail("%s: %v", what, err)
			continue
		}
		if item.First == 0 {
			// RFC 9162 2.1.4: nothing to prove from the empty tree; tlog has no size 0.
			if len(proof) != 0 || firstRoot != emptyRoot {
				v.fail("%s: from the empty tree the proof must be empty (%d hashes) and the first root SHA-256(\"\")", what, len(proof))
				continue
			}
		} else if err := tlog.CheckTree(tlog.TreeProof(proof), item.Second, secondRoot, item.First, firstRoot); err != nil {
			v.fail("%s: tlog.CheckTree: %v", what, err)
			continue
		}
		v.res.Consistency++
	}
}

func (v *verifier) readStored(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(v.stored)) {
			return nil, fmt.Errorf("stored hash %d not computed", x)
		}
		out[i] = v.stored[x]
	}
	return out, nil
}

// checkLeaves recomputes, with tlog's own storage layout, the root of every signed tree
// the given leaves cover.
func (v *verifier) checkLeaves() {
	if v.in.Leaves == nil {
		return
	}
	v.leaves = make([][]byte, 0, len(v.in.Leaves))
	for i, s := range v.in.Leaves {
		leaf, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			v.fail("leaves[%d]: not base64", i)
			v.leaves = nil
			return
		}
		hashes, err := tlog.StoredHashes(int64(i), leaf, tlog.HashReaderFunc(v.readStored))
		if err != nil {
			v.fail("leaves[%d]: tlog.StoredHashes: %v", i, err)
			v.leaves = nil
			return
		}
		v.leaves = append(v.leaves, leaf)
		v.stored = append(v.stored, hashes...)
	}
	v.res.Leaves = len(v.leaves)
	for _, size := range v.sizes() {
		root := v.signed[size]
		if size == 0 || size > int64(len(v.leaves)) {
			continue
		}
		th, err := tlog.TreeHash(size, tlog.HashReaderFunc(v.readStored))
		if err != nil {
			v.fail("leaves: tlog.TreeHash(%d): %v", size, err)
		} else if th != root {
			v.fail("leaves: the first %d leaves hash to %x, the signed root is %x", size, th, root)
		}
	}
}

type tileReader struct{ tiles map[tlog.Tile][]byte }

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, ok := r.tiles[t]
		if !ok {
			return nil, fmt.Errorf("tile %d/%d width %d (%s) was not given", t.L, t.N, t.W, t.Path())
		}
		out[i] = data
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

func tileName(t tileItem) string {
	kind := "tile"
	if t.Entries {
		kind = "entry bundle"
	}
	return fmt.Sprintf("%s %d/%d width %d", kind, t.Level, t.Index, t.Width)
}

// decodeBundle splits a C2SP tlog-tiles entry bundle: big-endian uint16 length, entry.
func decodeBundle(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("truncated length prefix")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("entry %d: %d bytes declared, %d left", len(out), n, len(data)-2)
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	return out, nil
}

func (v *verifier) checkTiles() {
	for i, item := range v.in.Tiles {
		what := fmt.Sprintf("tiles[%d] (%s)", i, tileName(item))
		data, err := base64.StdEncoding.DecodeString(item.Data)
		if err != nil {
			v.fail("%s: data is not base64", what)
			continue
		}
		if item.Width < 1 || item.Width > 1<<tileHeight || item.Index < 0 || item.Level < 0 {
			v.fail("%s: bad coordinates", what)
			continue
		}
		t := tlog.Tile{H: tileHeight, L: item.Level, N: item.Index, W: item.Width}
		if item.Entries {
			entries, err := decodeBundle(data)
			if err != nil {
				v.fail("%s: %v", what, err)
				continue
			}
			if len(entries) != item.Width {
				v.fail("%s: %d entries", what, len(entries))
				continue
			}
			first := item.Index << tileHeight
			if v.leaves != nil {
				bad := false
				for j, e := range entries {
					k := first + int64(j)
					if k >= int64(len(v.leaves)) || !bytes.Equal(e, v.leaves[k]) {
						v.fail("%s: entry %d is not leaves[%d]", what, j, k)
						bad = true
						break
					}
				}
				if bad {
					continue
				}
			}
			v.res.Tiles++
			continue
		}
		if len(data) != item.Width*tlog.HashSize {
			v.fail("%s: %d bytes, expected %d", what, len(data), item.Width*tlog.HashSize)
			continue
		}
		if v.leaves != nil && (item.Index<<tileHeight+int64(item.Width))<<(tileHeight*item.Level) <= int64(len(v.leaves)) {
			want, err := tlog.ReadTileData(t, tlog.HashReaderFunc(v.readStored))
			if err != nil {
				v.fail("%s: tlog.ReadTileData: %v", what, err)
				continue
			}
			if !bytes.Equal(want, data) {
				v.fail("%s: differs from tlog.ReadTileData over the leaves", what)
				continue
			}
		}
		v.tiles[t] = data
		v.res.Tiles++
	}
	if len(v.tiles) == 0 {
		return
	}
	// Read every signed tree back through tiles authenticated against its signed root.
	for _, size := range v.sizes() {
		root := v.signed[size]
		if size == 0 {
			continue
		}
		r := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tileReader{v.tiles})
		indexes := make([]int64, size)
		for k := range indexes {
			indexes[k] = tlog.StoredHashIndex(0, int64(k))
		}
		hashes, err := r.ReadHashes(indexes)
		if err != nil {
			v.fail("tiles for tree size %d: tlog.TileHashReader: %v", size, err)
			continue
		}
		th, err := tlog.TreeHash(size, r)
		if err != nil || th != root {
			v.fail("tiles for tree size %d: tlog.TreeHash %x (%v), signed root %x", size, th, err, root)
			continue
		}
		if int64(len(v.leaves)) >= size {
			for k, h := range hashes {
				if h != tlog.RecordHash(v.leaves[k]) {
					v.fail("tiles for tree size %d: leaf hash %d is not RecordHash(leaves[%d])", size, k, k)
					break
				}
			}
		}
		v.res.TreesRead++
	}
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	var in input
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "verify: stdin is not the expected JSON document: %v\n", err)
		os.Exit(2)
	}
	v := &verifier{
		in:     in,
		signed: map[int64]tlog.Hash{},
		tiles:  map[tlog.Tile][]byte{},
	}
	log, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		v.fail("verifier_key %q: note.NewVerifier: %v", in.VerifierKey, err)
	} else {
		v.log = log
		var cosigners []cosigner
		for i, k := range in.CosignerKeys {
			c, err := parseCosigner(k)
			if err != nil {
				v.fail("cosigner_keys[%d] %q: %v", i, k, err)
				continue
			}
			cosigners = append(cosigners, c)
		}
		v.openCheckpoints(cosigners)
		v.checkLeaves()
		v.checkInclusion()
		v.checkConsistency()
		v.checkTiles()
	}
	v.res.OK = len(v.res.Failures) == 0
	if v.res.Failures == nil {
		v.res.Failures = []string{}
	}
	out, _ := json.Marshal(v.res)
	fmt.Println(string(out))
	if !v.res.OK {
		os.Exit(1)
	}
}
