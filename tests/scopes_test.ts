// Scopes that cannot lie: withSaes / hooks scopes are views of the model, exact under concurrent
// tasks, out-of-order closing and re-entry; calls from hooks never hang; a call's signal ends it;
// a call frees only its own tensors; outputs say what ran (issue 20).
import assert from "node:assert/strict";
import {
  CallAbortedError,
  DisposedError,
  HookedSAETransformer,
  type ModelView,
  provenanceOf,
  SAE,
  Tensor,
} from "../mod.ts";
import { rng } from "./_util.ts";

const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
const model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
const other = await HookedSAETransformer.fromPretrained(`${REF}hf`);
const load = (name: string) => SAE.load(`${REF}saes/${name}`);
// Four SAEs at three hooks; two at blocks.1.hook_resid_pre, so the layer order matters there.
const saeA = await load("std_resid_pre1");
const saeB = await load("topk_mlp_out0");
const saeC = await load("std_resid_pre1");
const saeD = await load("gated_resid_post0");
const tokens = [[5, 17, 900, 3, 44, 12, 7]];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function logitsOf(out: Promise<Tensor> | Tensor): Promise<Float32Array> {
  using t = await out;
  return await t.toArray() as Float32Array;
}

/** Logits of a fresh state with exactly these attachments, added persistently to `other`. */
async function logitsWith(saes: [SAE, boolean][]): Promise<Float32Array> {
  other.resetSaes();
  for (const [sae, err] of saes) other.addSae(sae, { useErrorTerm: err });
  try {
    return await logitsOf(other.forward(tokens));
  } finally {
    other.resetSaes();
  }
}

const plain = await logitsOf(model.forward(tokens));

Deno.test("concurrent tasks, each through its own view, get bit-identical logits to the same SAEs run alone", async () => {
  const sets: [SAE, boolean][][] = [
    [[saeA, false]],
    [[saeB, false]],
    [[saeC, true], [saeD, false]],
    [[saeA, true], [saeB, false], [saeD, true]],
    [],
    [[saeD, false]],
    [[saeC, false], [saeB, true]],
    [[saeA, false], [saeD, true]],
  ];
  const alone: Float32Array[] = [];
  for (const s of sets) alone.push(await logitsWith(s));
  for (const n of [2, 8]) {
    const rand = rng(1000 + n);
    await Promise.all(
      sets.slice(0, n).map(async (set, i) => {
        await sleep(rand() * 5);
        // Nested views, one per attachment (each its own error-term setting).
        const views: ModelView[] = [];
        let view: ModelView | null = null;
        for (const [sae, err] of set) {
          view = view
            ? view.withSaes([sae], { useErrorTerm: err })
            : model.withSaes([sae], { useErrorTerm: err });
          views.push(view);
        }
        try {
          for (let round = 0; round < 3; round++) {
            await sleep(rand() * 4);
            const got = await logitsOf(view ? view.forward(tokens) : model.forward(tokens));
            if (view) assert.deepEqual(got, alone[i], `task ${i} of ${n}, round ${round}`);
          }
        } finally {
          for (const v of views.reverse()) v.close();
        }
      }),
    );
    assert.equal(model.attachedSaes.size, 0);
  }
});

Deno.test("all 24 closing orders of 4 scopes leave exactly the layering rule's state (attachedSaes and logits)", async () => {
  model.addSae(saeB); // persistent, under every scope
  const layers: [SAE, boolean][] = [[saeA, false], [saeD, false], [saeC, true], [saeB, true]];
  const expected = new Map<string, Float32Array>();
  const stateOf = (open: number[]) => {
    const m = new Map<string, [SAE, boolean]>([[saeB.cfg.hookName, [saeB, false]]]);
    for (const i of open) m.set(layers[i][0].cfg.hookName, layers[i]);
    return m;
  };
  const perms = (xs: number[]): number[][] =>
    xs.length <= 1
      ? [xs]
      : xs.flatMap((x) => perms(xs.filter((y) => y !== x)).map((p) => [x, ...p]));
  try {
    const orders = perms([0, 1, 2, 3]);
    assert.equal(orders.length, 24);
    for (const order of orders) {
      const scopes = layers.map(([sae, err]) => model.withSaes([sae], { useErrorTerm: err }));
      const open = [0, 1, 2, 3];
      for (const i of order) {
        scopes[i].close();
        open.splice(open.indexOf(i), 1);
        const want = stateOf(open);
        assert.deepEqual(
          new Map([...model.attachedSaes].map(([h, s]) => [h, s])),
          new Map([...want].map(([h, [s]]) => [h, s])),
          `order ${order}, after closing ${i}`,
        );
        const key = open.join(",");
        if (!expected.has(key)) expected.set(key, await logitsWith([...want.values()]));
        assert.deepEqual(
          await logitsOf(model.forward(tokens)),
          expected.get(key),
          `logits, order ${order}`,
        );
      }
    }
  } finally {
    model.resetSaes();
  }
  assert.equal(model.attachedSaes.size, 0);
});

Deno.test("closing a scope twice does nothing: nothing detached since comes back, no later scope goes", async () => {
  const a = model.withSaes([saeA]);
  a.close();
  model.addSae(saeC, { useErrorTerm: true });
  a.close();
  assert.equal(model.attachedSaes.get(saeA.cfg.hookName), saeC);
  model.resetSaes();
  const b = model.withSaes([saeA]);
  const c = model.withSaes([saeC]);
  c.close();
  c.close();
  assert.equal(model.attachedSaes.get(saeA.cfg.hookName), saeA);
  b.close();
  assert.equal(model.attachedSaes.size, 0);
  // addSae inside a scope goes to the persistent layer and stays after it.
  {
    using _s = model.withSaes([saeA]);
    model.addSae(saeD);
  }
  assert.deepEqual([...model.attachedSaes.values()], [saeD]);
  model.resetSaes();
  assert.deepEqual(await logitsOf(model.forward(tokens)), plain);
  // A closed view no longer runs.
  await assert.rejects(b.forward(tokens), DisposedError);
});

Deno.test("a hook that calls its own model, or another model, finishes (no hang)", async () => {
  const within = <T>(p: Promise<T>, ms: number) =>
    Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`no result within ${ms} ms`)))]);
  let inner: Float32Array | null = null;
  let innerOther: Float32Array | null = null;
  const t0 = performance.now();
  const out = await within(
    logitsOf(model.runWithHooks(tokens, {
      fwdHooks: [["blocks.0.hook_resid_pre", async () => {
        inner = await logitsOf(model.forward(tokens)); // runs nested, without this call's hook
        innerOther = await logitsOf(other.forward(tokens));
      }]],
    }) as Promise<Tensor>),
    5000,
  );
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms`);
  assert.deepEqual(inner, plain);
  assert.deepEqual(innerOther, plain);
  assert.deepEqual(out, plain);
  // Calls to another model do not wait on this model's hooks.
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const stuck = model.runWithHooks(tokens, { fwdHooks: [["hook_embed", () => gate]] });
  assert.deepEqual(await within(logitsOf(other.forward(tokens)), 5000), plain);
  release();
  (await stuck as Tensor).dispose();
});

Deno.test("a hook that never settles: the call's signal ends it with a typed error, and the model runs after", async () => {
  const ac = new AbortController();
  const never = model.runWithHooks(tokens, {
    fwdHooks: [["blocks.1.hook_resid_mid", () => new Promise<void>(() => {})]],
    signal: ac.signal,
  });
  const queued = model.forward(tokens); // waits behind the stuck call
  setTimeout(() => ac.abort(new Error("user gave up")), 50);
  await assert.rejects(
    never,
    (e) => e instanceof CallAbortedError && /user gave up/.test(e.message),
  );
  assert.deepEqual(await logitsOf(queued), plain);
  assert.deepEqual(await logitsOf(model.forward(tokens)), plain);
  // Already aborted: rejects at once, nothing runs.
  await assert.rejects(model.forward(tokens, { signal: AbortSignal.abort() }), CallAbortedError);
});

Deno.test("a tensor made while another task's generate (or hooked forward) runs survives that call", async () => {
  using slow = model.hooks([["blocks.0.hook_resid_pre", () => sleep(2)]]);
  const gen = slow.generate([[5, 17, 900]], { maxNewTokens: 6, doSample: false });
  const fwd = slow.forward(tokens);
  await sleep(3);
  const mine = Tensor.from([1, 2, 3, 4], [4]);
  await gen;
  (await fwd).dispose();
  assert.deepEqual([...await mine.toArray()], [1, 2, 3, 4]);
  mine.dispose();
});

Deno.test("provenance: logits, cache and generated tokens name exactly the SAEs and hooks applied, through views and nested views", async () => {
  const hookName = "blocks.0.hook_mlp_out";
  using v = model.withSaes([saeA], { useErrorTerm: true });
  using nested = v.hooks([[hookName, () => {}]]);
  using child = nested.withSaes([saeD]);
  using logits = await child.forward(tokens);
  const p = provenanceOf(logits)!;
  assert.deepEqual(
    p.saes.map((s) => [s.hookName, s.source, s.architecture, s.dSae, s.useErrorTerm]),
    [
      [saeA.cfg.hookName, saeA.source, "standard", saeA.cfg.dSae, true],
      [saeD.cfg.hookName, saeD.source, "gated", saeD.cfg.dSae, false],
    ],
  );
  assert.deepEqual(p.hooks, [{ name: hookName, dir: "fwd" }]);
  // The parent view has neither the child's SAE nor its hook.
  const [, cache] = await v.runWithCache(tokens, { namesFilter: "hook_embed" });
  assert.deepEqual(cache.provenance!.saes.map((s) => s.hookName), [saeA.cfg.hookName]);
  assert.deepEqual(cache.provenance!.hooks, []);
  cache.dispose();
  const gen = await child.generate([[5, 17, 900]], { maxNewTokens: 2, doSample: false });
  assert.deepEqual(provenanceOf(gen), p);
  // Call-local hooks are named too; a plain call with nothing attached names nothing.
  v.close();
  nested.close();
  child.close();
  const h = await model.runWithHooks(tokens, { fwdHooks: [["hook_embed", () => {}]] }) as Tensor;
  assert.deepEqual(provenanceOf(h), { saes: [], hooks: [{ name: "hook_embed", dir: "fwd" }] });
  h.dispose();
  using bare = await model.forward(tokens);
  assert.deepEqual(provenanceOf(bare), { saes: [], hooks: [] });
  // The model and a view print what they run with.
  using w = model.withSaes([saeB]);
  assert.match(Deno.inspect(model), new RegExp(`${saeB.cfg.hookName} <- SAE .*topk`));
  assert.match(String(w), /topk_mlp_out0/);
});

Deno.test("a disposed SAE or model: typed errors naming it, nothing attached", async () => {
  const sae = await load("std_resid_pre1");
  const scope = model.withSaes([sae]);
  sae.dispose();
  await assert.rejects(
    model.forward(tokens),
    (e) => e instanceof DisposedError && e.message.includes(sae.source),
  );
  await assert.rejects(scope.forward(tokens), DisposedError);
  scope.close();
  assert.throws(() => model.addSae(sae), DisposedError);
  assert.throws(() => model.withSaes([sae]), DisposedError);
  assert.equal(model.attachedSaes.size, 0);
  const gone = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  gone.dispose();
  await assert.rejects(gone.forward(tokens), DisposedError);
  await assert.rejects(gone.generate([[1, 2]]), DisposedError);
});

Deno.test("hooks() is a view too: plain calls see it while open, the view always, nothing after close", async () => {
  const zero = (a: Tensor) => a.scale(0);
  const scope = model.hooks([["hook_embed", zero]]);
  const zeroed = await logitsOf(scope.forward(tokens));
  assert.notDeepEqual(zeroed, plain);
  assert.deepEqual(await logitsOf(model.forward(tokens)), zeroed);
  assert.equal(model.hookCount, 1);
  scope.close();
  assert.equal(model.hookCount, 0);
  assert.deepEqual(await logitsOf(model.forward(tokens)), plain);
});
