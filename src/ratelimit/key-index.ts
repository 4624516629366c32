/**
 * String key → slot index, an open-addressing hash table (linear probing, backward-shift
 * deletion) over two Int32Arrays. The memory limiter uses it instead of a Map because a limiter
 * that sees millions of distinct keys spends its time inserting and evicting: a Map allocates and
 * rehashes its backing store as it churns and must look the evicted key up again to delete it;
 * this table never allocates after growing to size, and an eviction removes the victim by its
 * stored hash (faster than a Map on a flood of new keys, see docs/benchmarks.md; known keys are
 * served faster still by the small Map of returning keys in front of it, see MemoryRateLimiter).
 *
 * The hash (FNV-1a over UTF-16 code units) starts from a per-process random seed, so keys an
 * attacker controls (IPs, user ids) cannot be precomputed to collide.
 */
const SEED = (Math.random() * 0x7fffffff) | 0;

/**
 * `String.prototype.charCodeAt`, called through `.call`: once any module declares a subclass of
 * String (ioredis and node-redis both do, for RESP verbatim strings), V8 stops inlining the
 * method form `key.charCodeAt(i)` everywhere in the process and it gets several times slower
 * (docs/benchmarks.md); a call of the saved builtin keeps its fast path.
 */
const charCodeAt = String.prototype.charCodeAt;

export function hashKey(key: string): number {
  let h = 0x811c9dc5 ^ SEED;
  for (let i = 0; i < key.length; i++) {
    h ^= charCodeAt.call(key, i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

export class KeyIndex {
  /** slot + 1 at each position, 0 = empty. */
  #table: Int32Array;
  #hashes: Int32Array;
  #mask: number;
  #count = 0;

  /** `keys[slot]` is the key stored at `slot` (owned by the caller, read here for comparisons). */
  constructor(private readonly keys: readonly (string | undefined)[], initialCapacity = 1024) {
    const size = 1 << Math.max(4, Math.ceil(Math.log2(initialCapacity * 2)));
    this.#table = new Int32Array(size);
    this.#hashes = new Int32Array(size);
    this.#mask = size - 1;
  }

  get size(): number {
    return this.#count;
  }

  /** The slot of `key` (whose hash is `h`), or -1. */
  find(key: string, h: number): number {
    const p = this.#position(key, h);
    return p === -1 ? -1 : this.#table[p]! - 1;
  }

  /** Adds `key` → `slot`; the key must not be present. */
  insert(h: number, slot: number): void {
    if ((this.#count + 1) * 2 > this.#table.length) this.#grow();
    this.#place(h, slot + 1);
    this.#count++;
  }

  /** Removes `key` (hash `h`); returns the slot it had, or -1 when it was not there. */
  remove(key: string, h: number): number {
    const p = this.#position(key, h);
    if (p === -1) return -1;
    const table = this.#table;
    const hashes = this.#hashes;
    const mask = this.#mask;
    const slot = table[p]! - 1;
    // Backward shift: pull later entries of the probe run into the hole, so lookups never need tombstones.
    let hole = p;
    for (let q = (p + 1) & mask; table[q] !== 0; q = (q + 1) & mask) {
      const home = hashes[q]! & mask;
      // Entry at q may move to the hole if its home is not in the cyclic range (hole, q].
      const movable = hole <= q ? home <= hole || home > q : home <= hole && home > q;
      if (movable) {
        table[hole] = table[q]!;
        hashes[hole] = hashes[q]!;
        hole = q;
      }
    }
    table[hole] = 0;
    this.#count--;
    return slot;
  }

  /** Where `key` sits in the table, or -1. */
  #position(key: string, h: number): number {
    const table = this.#table;
    const hashes = this.#hashes;
    const mask = this.#mask;
    for (let p = h & mask; ; p = (p + 1) & mask) {
      const v = table[p]!;
      if (v === 0) return -1;
      if (hashes[p] === h && this.keys[v - 1] === key) return p;
    }
  }

  #place(h: number, value: number): void {
    const mask = this.#mask;
    let p = h & mask;
    while (this.#table[p] !== 0) p = (p + 1) & mask;
    this.#table[p] = value;
    this.#hashes[p] = h;
  }

  #grow(): void {
    const oldTable = this.#table;
    const oldHashes = this.#hashes;
    this.#table = new Int32Array(oldTable.length * 2);
    this.#hashes = new Int32Array(oldTable.length * 2);
    this.#mask = this.#table.length - 1;
    for (let i = 0; i < oldTable.length; i++) if (oldTable[i] !== 0) this.#place(oldHashes[i]!, oldTable[i]!);
  }
}
