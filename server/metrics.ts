/**
 * Prometheus metrics: the node uses npm:prom-client (text exposition format 0.0.4) with one
 * registry per node, never the library's global registry (several nodes may share a process).
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry };

/** Request and I/O latency buckets in seconds: 50 µs .. 10 s. */
export const LATENCY_BUCKETS: number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

/** Buckets for long background work (snapshots, compactions, backups): 1 ms .. 30 min. */
export const DURATION_BUCKETS: number[] = [
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  1800,
];

/** One labelled series of a {@link LatencyHistogram}, bound once: observing it hashes nothing. */
export interface HistogramSeries {
  /** Counts one observation (in the histogram's unit; a non-finite value is ignored). */
  observe(value: number): void;
}

class Series implements HistogramSeries {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last one above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly labels: Record<string, string>, private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/** The options of a {@link LatencyHistogram}. */
export interface LatencyHistogramOptions<L extends string> {
  /** The metric family's name. */
  name: string;
  /** Its help text. */
  help: string;
  /** The label names (none by default). */
  labelNames?: readonly L[];
  /** Upper bounds of the buckets, ascending (`+Inf` is implied). */
  buckets: number[];
  /** The registries it is rendered by. */
  registers?: Registry[];
}

/**
 * A histogram for the hot paths (one observation per client request or per batch): the same
 * exposition as prom-client's `Histogram` (`_bucket` with `le`, `_sum`, `_count`), rendered by a
 * prom-client registry, at a fraction of its cost per observation. prom-client hashes the label
 * object, validates it and keys its buckets by the bound's string on every `observe`; here a
 * series is bound once ({@link series}) and an observation is a few array operations.
 */
export class LatencyHistogram<L extends string = never> {
  /** The family's name. */
  readonly name: string;
  /** The family's help text. */
  readonly help: string;
  /** Its type in the exposition. */
  readonly type = "histogram";
  /** How prom-client's cluster mode merges it. */
  readonly aggregator = "sum";
  readonly #labelNames: readonly L[];
  readonly #bounds: Float64Array;
  readonly #series = new Map<string, Series>();
  /** The series of a histogram without labels (bound once: observed per batch or request). */
  #unlabelled: HistogramSeries | undefined;

  /** Registers the histogram with `opts.registers`. */
  constructor(opts: LatencyHistogramOptions<L>) {
    this.name = opts.name;
    this.help = opts.help;
    this.#labelNames = opts.labelNames ?? [];
    this.#bounds = Float64Array.from(opts.buckets);
    for (let i = 1; i < this.#bounds.length; i++) {
      if (!(this.#bounds[i] > this.#bounds[i - 1])) {
        throw new RangeError(`${opts.name}: buckets must be ascending`);
      }
    }
    // An unlabelled histogram is rendered (zero) before its first observation, as prom-client's.
    if (this.#labelNames.length === 0) this.#unlabelled = this.series({} as Record<L, string>);
    for (const r of opts.registers ?? []) {
      r.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
    }
  }

  /** The series of `labels` (every label name given), created on first use and kept. */
  series(labels: Record<L, string>): HistogramSeries {
    const values = this.#labelNames.map((n) => {
      const v = labels[n];
      if (typeof v !== "string") throw new TypeError(`${this.name}: label ${n} is missing`);
      return v;
    });
    const key = values.join("\u0000");
    let s = this.#series.get(key);
    if (!s) {
      const own: Record<string, string> = {};
      this.#labelNames.forEach((n, i) => own[n] = values[i]);
      this.#series.set(key, s = new Series(own, this.#bounds));
    }
    return s;
  }

  /** Counts one observation of the series of `labels`, or of the unlabelled series. */
  observe(labels: Record<L, string>, value: number): void;
  /** Counts one observation (a histogram without labels). */
  observe(value: number): void;
  observe(a: Record<L, string> | number, value?: number): void {
    if (typeof a === "number") {
      (this.#unlabelled ??= this.series({} as Record<L, string>)).observe(a);
    } else this.series(a).observe(value!);
  }

  /** The samples, as a prom-client registry renders them (cumulative buckets). */
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] =
      [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        acc += s.counts[i];
        const le = i < this.#bounds.length ? this.#bounds[i] : "+Inf";
        values.push({ labels: { le, ...s.labels }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }
}
