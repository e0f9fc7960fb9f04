#!/usr/bin/env python3
"""Builds prompts.jsonl, the prompts of TestEstimatorCalibrates, from text on a Debian
machine: short questions written for the test, English and translated man pages
(Russian, Japanese, Korean, German, French, Spanish, Polish), and Go source from the Go
distribution. Each line is {"set": "train"|"held-out", "class": ..., "messages": [...]}.
count_tokens.mjs then adds the token counts. Run from this folder:

    python3 gen_prompts.py > prompts.raw.jsonl && node count_tokens.mjs < prompts.raw.jsonl > prompts.jsonl

The selection is deterministic (a seeded generator over sorted file lists), so the
same machine image gives the same file.
"""
import glob, gzip, json, os, random, re, subprocess, sys

rng = random.Random(17)

SHORT = [
    "hi", "Hello!", "What is 2+2?", "Translate 'good morning' to French.", "Tell me a joke.",
    "Summarize the plot of Hamlet in one sentence.", "What's the capital of Australia?",
    "Write a haiku about autumn.", "How do I reverse a list in Python?", "Is coffee bad for you?",
    "Explain recursion to a five-year-old.", "Give me three names for a cat.",
    "What time zone is Tokyo in?", "Convert 100 Fahrenheit to Celsius.", "Define entropy.",
    "Why is the sky blue?", "Recommend a sci-fi book.", "What does HTTP 429 mean?",
    "List the planets.", "How many legs does a spider have?", "Spell 'necessary'.",
    "What is a monad?", "Who wrote Dune?", "Best way to learn Go?", "What is TCP slow start?",
    "Fix: undefined: fmt", "Is 97 prime?", "Say something nice.", "ok thanks", "continue",
    "Can you shorten this: 'at this point in time'?", "What's the difference between a list and a tuple?",
    "Name a prime above 100.", "How do vaccines work?", "What is Kubernetes?", "yes", "no, the other one",
    "Rewrite in passive voice: the cat ate the fish.", "What is the GDP of France?", "Explain SSE briefly.",
    "Привет, как дела?", "Что такое энтропия?", "こんにちは", "今日の天気は?", "안녕하세요",
    "Wie spät ist es?", "¿Dónde está la biblioteca?", "Merci beaucoup !", "Dzień dobry!", "你好，世界",
]
SYSTEMS = ["You are a helpful assistant.", "You are a terse senior engineer. Answer in one paragraph.",
           "Answer in the language of the question.", ""]

ROFF_ESC = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[-&e|^%]|\\s[-+]?\d|\\\*\(?..?")

def man_text(path):
    try:
        raw = gzip.open(path).read().decode("utf-8")
    except Exception:
        return ""
    out = []
    for line in raw.splitlines():
        if line.startswith(".\\\"") or line.startswith("'\\\""):
            continue
        if line.startswith("."):
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0] in (".SH", ".SS", ".B", ".I", ".BR", ".IR", ".BI", ".IB", ".TP", ".IP"):
                line = parts[1].strip('"')
            else:
                continue
        out.append(ROFF_ESC.sub("", line).replace("\\", ""))
    return "\n".join(l for l in out if l.strip())

def chunk(text, lo, hi):
    if len(text.encode()) <= lo:
        return None
    b = text.encode()
    start = rng.randrange(0, max(1, len(b) - hi))
    piece = b[start:start + rng.randint(lo, hi)].decode("utf-8", "ignore")
    # start and end on line boundaries where possible
    lines = piece.split("\n")
    if len(lines) > 3:
        lines = lines[1:-1]
    return "\n".join(lines).strip()

def pick_files(pattern, n):
    files = sorted(glob.glob(pattern))
    rng.shuffle(files)
    return files[: n * 3]

def prompts_from(files, lo, hi, n, render):
    out = []
    for f in files:
        t = render(f)
        c = chunk(t, lo, hi) if t else None
        if c and len(c) > lo // 4:
            out.append(c)
        if len(out) >= n:
            break
    return out

def go_text(path):
    try:
        return open(path, encoding="utf-8").read()
    except Exception:
        return ""

goroot = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True).stdout.strip()
classes = {
    "short": [s for s in SHORT],
    "long": prompts_from(pick_files("/usr/share/man/man1/*.gz", 60), 2500, 6000, 60, man_text),
    "code": prompts_from(pick_files(os.path.join(goroot, "src/net/http/*.go"), 60) +
                         pick_files(os.path.join(goroot, "src/strings/*.go"), 20), 400, 2000, 60, go_text),
}
langs = {"ru": 14, "ja": 14, "ko": 8, "de": 10, "fr": 8, "es": 8, "pl": 8, "zh_CN": 8}
nonen = []
for lang, n in langs.items():
    nonen += [(lang, p) for p in prompts_from(pick_files(f"/usr/share/man/{lang}/man*/*.gz", n), 300, 2000, n, man_text)]

rows = []
def row(cls, text, lang=None):
    msgs = []
    sys_prompt = rng.choice(SYSTEMS)
    if sys_prompt:
        msgs.append({"role": "system", "content": sys_prompt})
    msgs.append({"role": "user", "content": text})
    r = {"class": cls, "messages": msgs}
    if lang:
        r["lang"] = lang
    rows.append(r)

for cls, texts in classes.items():
    for t in texts:
        row(cls, t)
for lang, t in nonen:
    row("non-english", t, lang)
rng.shuffle(rows)
# A quarter of each class is held out.
seen = {}
for r in rows:
    k = r["class"]
    seen[k] = seen.get(k, 0) + 1
    r["set"] = "held-out" if seen[k] % 4 == 0 else "train"
for r in rows:
    print(json.dumps(r, ensure_ascii=False))
