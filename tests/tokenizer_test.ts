// The tokenizer reproduces the reference cases (text -> ids, per-id pieces, round trip).
import assert from "node:assert/strict";
import { HfTokenizer } from "../src/io/tokenizer.ts";

const DIR = new URL("./reference/tokenizer_gpt2", import.meta.url).pathname;
const cases = JSON.parse(await Deno.readTextFile(`${DIR}/cases.json`)) as {
  text: string;
  ids: number[];
  pieces: string[];
  decoded: string;
}[];

Deno.test("GPT-2 tokenizer matches every reference case", async () => {
  const tok = (await HfTokenizer.load(DIR))!;
  assert.equal(tok.eosTokenId, 50256);
  assert.equal(tok.bosTokenId, 50256);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, c.text);
    assert.deepEqual(c.ids.map((i) => tok.piece(i)), c.pieces, c.text);
    assert.equal(tok.decode(c.ids), c.decoded);
  }
});

Deno.test("a directory without tokenizer.json has no tokenizer", async () => {
  assert.equal(
    await HfTokenizer.load(new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname),
    null,
  );
});
