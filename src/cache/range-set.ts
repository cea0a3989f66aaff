// Which byte ranges of a file are present: sorted, disjoint, merged half-open intervals [start, end).
// Kept exactly, so that the cache never guesses from a file's size which bytes it holds.

export type Range = [start: number, end: number];

export class RangeSet {
  private ranges: Range[];

  constructor(ranges: Range[] = []) {
    this.ranges = [];
    for (const [s, e] of ranges) this.add(s, e);
  }

  /** Marks [start, end) present, merging with neighbours it touches or overlaps. */
  add(start: number, end: number): void {
    if (end <= start) return;
    const out: Range[] = [];
    let placed = false;
    for (const [s, e] of this.ranges) {
      if (e < start) out.push([s, e]);
      else if (end < s) {
        if (!placed) {
          out.push([start, end]);
          placed = true;
        }
        out.push([s, e]);
      } else {
        start = Math.min(start, s);
        end = Math.max(end, e);
      }
    }
    if (!placed) out.push([start, end]);
    this.ranges = out;
  }

  /** Marks [start, end) absent. */
  remove(start: number, end: number): void {
    if (end <= start) return;
    const out: Range[] = [];
    for (const [s, e] of this.ranges) {
      if (e <= start || s >= end) out.push([s, e]);
      else {
        if (s < start) out.push([s, start]);
        if (e > end) out.push([end, e]);
      }
    }
    this.ranges = out;
  }

  /** Drops everything at or after `end`. */
  trim(end: number): void {
    this.ranges = this.ranges.filter(([s]) => s < end).map(([s, e]) => [s, Math.min(e, end)]);
  }

  /** Whether every byte of [start, end) is present. */
  contains(start: number, end: number): boolean {
    if (end <= start) return true;
    for (const [s, e] of this.ranges) {
      if (s <= start && end <= e) return true;
      if (s > start) return false;
    }
    return false;
  }

  /** Whether every byte of every range is present. */
  containsAll(ranges: Range[]): boolean {
    return ranges.every(([s, e]) => this.contains(s, e));
  }

  /** The first byte at or after `from` that is not present. */
  firstMissing(from: number): number {
    for (const [s, e] of this.ranges) {
      if (s > from) return from;
      if (e > from) from = e;
    }
    return from;
  }

  /** The first present byte at or after `from` (Infinity if none): where a download from `from` may stop. */
  nextPresent(from: number): number {
    for (const [s, e] of this.ranges) {
      if (e <= from) continue;
      return Math.max(s, from);
    }
    return Infinity;
  }

  /** Total bytes present. */
  get bytes(): number {
    return this.ranges.reduce((sum, [s, e]) => sum + (e - s), 0);
  }

  toJSON(): Range[] {
    return this.ranges.map(([s, e]) => [s, e]);
  }
}
