// Adds token counts to the prompts read on standard input (JSON lines, from
// gen_prompts.py) and writes them to standard output: for each of OpenAI's
// o200k_base, cl100k_base and p50k_base encodings, the tokens a chat completion of the
// messages takes by the rule OpenAI's cookbook gives for counting them with tiktoken
// ("How to count tokens with tiktoken", num_tokens_from_messages): 3 tokens of framing
// per message, plus the tokens of each of its values (role, content), plus 3 that
// prime the reply. The encodings come from the npm package js-tiktoken 1.0.21, a port
// of tiktoken that ships their ranks, so this runs offline:
//
//     npm install js-tiktoken@1.0.21 && node count_tokens.mjs < prompts.raw.jsonl > prompts.jsonl
import { getEncoding } from "js-tiktoken";
import { createInterface } from "node:readline";

const names = ["o200k_base", "cl100k_base", "p50k_base"];
const encs = Object.fromEntries(names.map((n) => [n, getEncoding(n)]));

function count(enc, messages) {
  let n = 3;
  for (const m of messages) {
    n += 3;
    for (const v of Object.values(m)) n += enc.encode(v).length;
  }
  return n;
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const row = JSON.parse(line);
  row.tokens = Object.fromEntries(names.map((n) => [n, count(encs[n], row.messages)]));
  console.log(JSON.stringify(row));
}
