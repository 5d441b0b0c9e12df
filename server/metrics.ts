/**
 * Minimal Prometheus metrics: counters, gauges and histograms rendered in the text exposition
 * format (version 0.0.4) for GET /metrics.
 *
 * @module
 */

/** Label names to values. */
export type Labels = Record<string, string>;

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const parts: string[] = [];
  if (labels) {
    for (const [k, v] of Object.entries(labels)) parts.push(`${k}="${escapeLabel(v)}"`);
  }
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Something the registry renders. */
export interface Metric {
  /** The metric name. */
  name: string;
  /** The HELP text. */
  help: string;
  /** The TYPE. */
  type: "counter" | "gauge" | "histogram";
  /** Appends the exposition lines. */
  render(out: string[]): void;
}

/** A monotonically increasing count. */
export class Counter implements Metric {
  /** The Prometheus type. */
  readonly type = "counter";
  private value = 0;
  /** Creates the counter. */
  constructor(readonly name: string, readonly help: string) {}
  /** Adds `n` (default 1). */
  inc(n = 1): void {
    this.value += n;
  }
  /** The current value. */
  get(): number {
    return this.value;
  }
  /** Appends the sample lines. */
  render(out: string[]): void {
    out.push(`${this.name} ${fmt(this.value)}`);
  }
}

/** A value that goes up and down, set directly or read from a callback at scrape time. */
export class Gauge implements Metric {
  /** The Prometheus type. */
  readonly type = "gauge";
  private values = new Map<string, { labels?: Labels; value: number }>();
  /** Creates the gauge; `collect` (if given) supplies labeled values at each scrape. */
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly collect?: () => Array<{ labels?: Labels; value: number }> | number,
  ) {}
  /** Sets the value (for the given labels). */
  set(value: number, labels?: Labels): void {
    this.values.set(labelText(labels), { labels, value });
  }
  /** Appends the sample lines. */
  render(out: string[]): void {
    if (this.collect) {
      let got: ReturnType<NonNullable<typeof this.collect>>;
      try {
        got = this.collect();
      } catch {
        return;
      }
      if (typeof got === "number") {
        out.push(`${this.name} ${fmt(got)}`);
      } else {
        for (const s of got) out.push(`${this.name}${labelText(s.labels)} ${fmt(s.value)}`);
      }
    }
    for (const s of this.values.values()) {
      out.push(`${this.name}${labelText(s.labels)} ${fmt(s.value)}`);
    }
  }
}

/** Default latency buckets in seconds: 50 µs .. 10 s. */
export const LATENCY_BUCKETS = [
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

/** A histogram of observations (cumulative buckets, sum and count). */
export class Histogram implements Metric {
  /** The Prometheus type. */
  readonly type = "histogram";
  private counts: Float64Array;
  private sum = 0;
  private count = 0;
  /** Creates the histogram with upper bounds `buckets` (ascending). */
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[] = LATENCY_BUCKETS,
    /** Constant labels of this series (for a labeled family, see {@link HistogramVec}). */
    readonly labels?: Labels,
  ) {
    this.counts = new Float64Array(buckets.length);
  }
  /** Records one observation. */
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]) {
        this.counts[i]++;
        return;
      }
    }
  }
  /** Number of observations. */
  get total(): number {
    return this.count;
  }
  /** Appends the sample lines. */
  render(out: string[]): void {
    let cum = 0;
    const l = this.labels;
    for (let i = 0; i < this.buckets.length; i++) {
      cum += this.counts[i];
      out.push(`${this.name}_bucket${labelText(l, ["le", fmt(this.buckets[i])])} ${cum}`);
    }
    out.push(`${this.name}_bucket${labelText(l, ["le", "+Inf"])} ${this.count}`);
    out.push(`${this.name}_sum${labelText(l)} ${fmt(this.sum)}`);
    out.push(`${this.name}_count${labelText(l)} ${this.count}`);
  }
}

/** A family of histograms told apart by one label (created on first use). */
export class HistogramVec implements Metric {
  /** The Prometheus type. */
  readonly type = "histogram";
  private children = new Map<string, Histogram>();
  /** Creates the family. */
  constructor(
    readonly name: string,
    readonly help: string,
    readonly label: string,
    readonly buckets: number[] = LATENCY_BUCKETS,
  ) {}
  /** The series for `value`. */
  with(value: string): Histogram {
    let h = this.children.get(value);
    if (!h) {
      h = new Histogram(this.name, this.help, this.buckets, { [this.label]: value });
      this.children.set(value, h);
    }
    return h;
  }
  /** Appends the sample lines of every series. */
  render(out: string[]): void {
    for (const h of this.children.values()) h.render(out);
  }
}

/** A family of counters told apart by labels (created on first use). */
export class CounterVec implements Metric {
  /** The Prometheus type. */
  readonly type = "counter";
  private values = new Map<string, { labels: Labels; value: number }>();
  /** Creates the family. */
  constructor(readonly name: string, readonly help: string) {}
  /** Adds `n` (default 1) to the series with `labels`. */
  inc(labels: Labels, n = 1): void {
    const k = labelText(labels);
    const v = this.values.get(k);
    if (v) v.value += n;
    else this.values.set(k, { labels, value: n });
  }
  /** Appends the sample lines. */
  render(out: string[]): void {
    for (const v of this.values.values()) {
      out.push(`${this.name}${labelText(v.labels)} ${fmt(v.value)}`);
    }
  }
}

/** A set of metrics rendered together. */
export class Registry {
  private metrics: Metric[] = [];

  /** Registers and returns a counter. */
  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }

  /** Registers and returns a gauge. */
  gauge(
    name: string,
    help: string,
    collect?: () => Array<{ labels?: Labels; value: number }> | number,
  ): Gauge {
    return this.add(new Gauge(name, help, collect));
  }

  /** Registers and returns a histogram. */
  histogram(name: string, help: string, buckets?: number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }

  /** Registers and returns a labeled histogram family. */
  histogramVec(name: string, help: string, label: string, buckets?: number[]): HistogramVec {
    return this.add(new HistogramVec(name, help, label, buckets));
  }

  /** Registers and returns a labeled counter family. */
  counterVec(name: string, help: string): CounterVec {
    return this.add(new CounterVec(name, help));
  }

  /** Registers a metric. */
  private add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }

  /** The text exposition of every metric. */
  render(): string {
    const out: string[] = [];
    for (const m of this.metrics) {
      out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      out.push(`# TYPE ${m.name} ${m.type}`);
      m.render(out);
    }
    return out.join("\n") + "\n";
  }
}
