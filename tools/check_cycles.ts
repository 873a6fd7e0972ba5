/**
 * Fails when the local modules reachable from an entry point (default `mod.ts`) import each other
 * in a cycle, and names each cycle. Every static import counts, `import type` included: a cycle
 * of types still ties two modules together. Part of `deno task check`:
 * `deno run --allow-run --allow-read tools/check_cycles.ts [entry.ts ...]`.
 *
 * @example
 * ```ts
 * import { findCycles } from "./check_cycles.ts";
 * const cycles = findCycles(new Map([["a.ts", ["b.ts"]], ["b.ts", ["a.ts"]]]));
 * console.log(cycles); // [["a.ts", "b.ts", "a.ts"]]
 * ```
 * @module
 */

/** The part of `deno info --json` this tool reads. */
export interface DenoInfo {
  /** Every module of the graph. */
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier: string };
      type?: { specifier: string };
      isDynamic?: boolean;
    }[];
  }[];
}

/**
 * The import graph among local (`file:`) modules: each module's static imports, code and type.
 *
 * @example
 * ```ts
 * const graph = localGraph(JSON.parse(infoJson));
 * ```
 */
export function localGraph(info: DenoInfo): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const m of info.modules) {
    if (!m.specifier.startsWith("file:")) continue;
    const deps = new Set<string>();
    for (const d of m.dependencies ?? []) {
      if (d.isDynamic) continue;
      for (const r of [d.code, d.type]) {
        if (r?.specifier.startsWith("file:")) deps.add(r.specifier);
      }
    }
    graph.set(m.specifier, [...deps]);
  }
  return graph;
}

/**
 * One cycle per strongly connected group of modules (or module importing itself), as a path that
 * starts and ends at the same module; none for an acyclic graph.
 *
 * @example
 * ```ts
 * findCycles(new Map([["a", ["b"]], ["b", []]])); // []
 * ```
 */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's strongly connected components, iteratively (import chains can be deep).
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>();
  const groups: string[][] = [];
  let next = 0;
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: [string, number][] = [[root, 0]];
    index.set(root, next), low.set(root, next++), stack.push(root), onStack.add(root);
    while (work.length) {
      const top = work[work.length - 1];
      const [v, i] = top;
      const deps = graph.get(v) ?? [];
      if (i < deps.length) {
        top[1]++;
        const w = deps[i];
        if (!index.has(w)) {
          index.set(w, next), low.set(w, next++), stack.push(w), onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const u = work[work.length - 1][0];
        low.set(u, Math.min(low.get(u)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const group: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          group.push(w);
        } while (w !== v);
        if (group.length > 1 || deps.includes(v)) groups.push(group);
      }
    }
  }
  return groups.map((g) => cycleWithin(graph, new Set(g)));
}

/** A shortest cycle through the first (sorted) module of a strongly connected group. */
function cycleWithin(graph: ReadonlyMap<string, readonly string[]>, group: Set<string>): string[] {
  const start = [...group].sort()[0];
  const prev = new Map<string, string>();
  const queue = [start];
  for (let q = 0; q < queue.length; q++) {
    const v = queue[q];
    for (const w of graph.get(v) ?? []) {
      if (!group.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let x = v; x !== start; x = prev.get(x)!) path.splice(1, 0, x);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

if (import.meta.main) {
  const entries = Deno.args.length ? Deno.args : ["mod.ts"];
  const root = new URL("../", import.meta.url).href;
  let failed = false;
  for (const entry of entries) {
    const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", entry] })
      .output();
    if (!out.success) {
      console.error(new TextDecoder().decode(out.stderr));
      Deno.exit(1);
    }
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as DenoInfo;
    const cycles = findCycles(localGraph(info));
    for (const c of cycles) {
      console.error(`import cycle: ${c.map((s) => s.replace(root, "")).join(" -> ")}`);
    }
    failed ||= cycles.length > 0;
  }
  if (failed) {
    console.error("Make the imports one-way (move what both sides need into a module of its own).");
    Deno.exit(1);
  }
  console.log(`No import cycles among the local modules of ${entries.join(", ")}.`);
}
