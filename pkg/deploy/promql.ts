// The metrics a PromQL expression names. The tests of the PrometheusRule and
// the Grafana dashboard (monitoring.ts) check them against what the runner and
// the controller export (test/exported-metrics.ts reads their registries), so an
// alert or a panel can never query a series nothing exports.

/** A metric named in an expression, with the label names its matchers use. */
export interface MetricRef {
  name: string;
  matchers: string[];
}

const KEYWORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "atan2", "inf", "nan"]);
const IDENT = /[A-Za-z_:][A-Za-z0-9_:]*/y;

/**
 * The metric names of a PromQL expression (every identifier that is not a
 * function, a keyword, a label name in a matcher or grouping, or inside a
 * string or a range), with the label names of its matchers.
 */
export function metricRefs(expr: string): MetricRef[] {
  const out: MetricRef[] = [];
  let i = 0;
  const skipBalanced = (open: string, close: string) => {
    let depth = 0;
    for (; i < expr.length; i++) {
      const c = expr[i]!;
      if (c === '"' || c === "'" || c === "`") {
        skipString();
        i--;
        continue;
      }
      if (c === open) depth++;
      else if (c === close && --depth === 0) {
        i++;
        return;
      }
    }
    throw new Error(`unbalanced ${open}${close} in ${expr}`);
  };
  const skipString = () => {
    const q = expr[i]!;
    for (i++; i < expr.length; i++) {
      if (expr[i] === "\\" && q !== "`") i++;
      else if (expr[i] === q) {
        i++;
        return;
      }
    }
    throw new Error(`unterminated string in ${expr}`);
  };
  const skipSpace = () => {
    while (i < expr.length && /\s/.test(expr[i]!)) i++;
  };
  const matcherLabels = (start: number, end: number) => [...expr.slice(start, end).replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!);
  while (i < expr.length) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === "`") skipString();
    else if (c === "[") skipBalanced("[", "]");
    else if (c === "{") {
      // A selector without a metric name ({__name__=...}) is not used here.
      const start = i;
      skipBalanced("{", "}");
      throw new Error(`a selector without a metric name: ${expr.slice(start, i)} in ${expr}`);
    } else if (/[0-9.]/.test(c)) {
      while (i < expr.length && /[0-9.]/.test(expr[i]!)) i++;
    } else if (/[A-Za-z_:]/.test(c)) {
      IDENT.lastIndex = i;
      const word = IDENT.exec(expr)![0];
      i += word.length;
      const after = i;
      skipSpace();
      if (KEYWORDS.has(word)) {
        // by (...), without (...), on (...), ignoring (...), group_left (...): label names, not metrics
        if (["by", "without", "on", "ignoring", "group_left", "group_right"].includes(word) && expr[i] === "(") skipBalanced("(", ")");
        continue;
      }
      // sum by (labels) (...): an aggregation whose grouping comes first
      const grouping = /^(by|without)\s*\(/.exec(expr.slice(i));
      if (grouping) {
        i += grouping[1]!.length;
        skipSpace();
        skipBalanced("(", ")");
        skipSpace();
      }
      if (expr[i] === "(") continue; // a function call
      if (expr[i] === "{") {
        const start = i + 1;
        skipBalanced("{", "}");
        out.push({ name: word, matchers: matcherLabels(start, i - 1) });
      } else {
        i = after;
        out.push({ name: word, matchers: [] });
      }
    } else i++;
  }
  return out;
}
