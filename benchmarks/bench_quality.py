"""Junk recall per family, normal chat removed, and throughput of the quality rules.

    .venv/bin/python benchmarks/bench_quality.py [--messages 200000] [--junk 0.05] [--seed 7]

Generates support-chat messages with ground truth (each message one document): normal chat
(short replies, one-line questions, long answers, seven languages besides English, code
pastes, stack traces, URLs, lists, sign-offs, emoji, and real paragraphs of CPython's
reference docs) and ``--junk`` of junk in eight families (one-word line floods, repeated
short units, emoji runs, e-mail signatures, legal disclaimers, auto-replies, symbol soup,
keyboard mash). Scores them with ``quality_signals`` (default ``QualityConfig``,
``min_score`` 0.5) and prints, per family, the share dropped (junk: recall; normal: removed),
then the throughput (best of ``--repeat``) with 1 and 2 scoring threads (``--threads``): msgs/s
of wall time and msgs per CPU-second (all threads; on a shared, loaded machine the wall
figure follows the load, the CPU one much less), for all messages and per length band.

``generate(n, junk_share, seed)`` is the generator the test ``test_quality_chat.py`` uses.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import Counter

import pyarrow as pa

from llm_data_platform.transforms import quality
from llm_data_platform.transforms.quality import quality_signals

WORDS = [
    "account",
    "password",
    "reset",
    "login",
    "error",
    "install",
    "update",
    "version",
    "python",
    "script",
    "file",
    "folder",
    "server",
    "database",
    "query",
    "table",
    "column",
    "row",
    "export",
    "import",
    "invoice",
    "payment",
    "order",
    "refund",
    "shipping",
    "address",
    "browser",
    "cache",
    "cookie",
    "setting",
    "profile",
    "email",
    "notification",
    "report",
    "dashboard",
    "chart",
    "upload",
    "download",
    "permission",
    "token",
    "key",
    "api",
    "request",
    "response",
    "timeout",
]
NAMES = ["Anna", "Ben", "Chen", "Dana", "Eli", "Farah", "Gus", "Hiro", "Ines", "Jon"]
SURNAMES = ["Smith", "Müller", "García", "Dubois", "Rossi", "Kowalski", "Tanaka", "Silva"]
COMPANIES = ["Acme Corp", "Globex GmbH", "Initech", "Umbrella Ltd", "Soylent SA"]

SHORT = [
    "thanks!",
    "Thanks!",
    "thank you",
    "ok",
    "OK",
    "ok, that worked",
    "hi",
    "Hi there",
    "hello",
    "yes",
    "no",
    "yep",
    "nope",
    "sure",
    "great, thanks",
    "perfect",
    "got it",
    "it works now",
    "still broken",
    "same error",
    "haha",
    "lol",
    "hahaha",
    "Hmm....",
    "Noooo way",
    "ok 👍",
    "Thanks 🙏",
    "42",
    "done",
    "any update?",
    "one sec",
    "brb",
    "Thanks so much 🙏🙏🙏",
    "That fixed it 🎉🎉",
    "ty",
    "np",
    "cool",
    "Ok!",
    "merci",
    "danke",
]
QUESTIONS = [
    "How do I reset my {w} after the {w} failed?",
    "Why does the {w} show an error when I open the {w}?",
    "Can I export the {w} as CSV?",
    "Where is the {w} setting in the new {w}?",
    "Is there a way to change my {w} without losing the {w}?",
    "What's the difference between the {w} and the {w}?",
    "My {w} keeps timing out, what should I check?",
    "How do I set up an out-of-office auto-reply in Outlook?",
    "Is my {w} confidential, or can other admins see it?",
    "I'm out of office tomorrow, can you send the {w} today?",
    "Should the disclaimer in our footer mention the {w}?",
]
LONG = [
    "I tried to update the {w} yesterday and it failed halfway, so now the {w} shows an old "
    "version and the {w} page is blank. I already cleared the {w} and restarted the {w}, but "
    "nothing changed. Could you tell me what else I can try before I reinstall everything?",
    "Thanks for the quick answer. The {w} works again, but the {w} still takes about ten "
    "seconds to load and sometimes the {w} is missing from the list. Is that expected after "
    "a migration, or should I open a separate ticket for it?",
    "Sure. First open Settings, then go to {w} and choose {w}. If the option is greyed out, "
    "your role lacks the permission; ask an administrator to grant it. After saving, sign "
    "out and in again so the new {w} is picked up.",
]
NON_ENGLISH = [
    "¿Cómo puedo restablecer mi contraseña si ya no tengo acceso al correo?",
    "Gracias, ya funciona. ¿Hay alguna forma de exportar los datos?",
    "Comment puis-je changer l'adresse de livraison de ma commande ?",
    "Merci beaucoup, c'est exactement ce qu'il me fallait !",
    "Wie kann ich mein Passwort zurücksetzen, wenn die E-Mail nicht ankommt?",
    "Danke, das hat geholfen. Die Rechnung ist jetzt korrekt.",
    "Como faço para cancelar a assinatura sem perder os meus dados?",
    "Non riesco ad accedere al mio account, mi potete aiutare?",
    "Привет, не могу войти в аккаунт после обновления. Что делать?",
    "Спасибо, всё работает.",
    "你好，请问如何在Python中反转列表？",
    "我的订单还没有发货，请帮我查一下。",
    "パスワードをリセットする方法を教えてください。",
    "ありがとうございます、解決しました！",
]
CODE = [
    "x = [i*i for i in range(10)]",
    "def f(x):\n    return x ** 2  # square",
    'print({"a": 1, "b": [1, 2]})',
    "for row in rows:\n    if row['status'] == 'failed':\n        retry(row['id'])\n    else:\n"
    "        continue",
    "SELECT id, email FROM users WHERE created_at > '2026-01-01' ORDER BY id;",
    "$ pip install -r requirements.txt\nERROR: No matching distribution found for torch==9.9",
    "const res = await fetch(url, { method: 'POST', body: JSON.stringify(data) });",
    "if (ptr == NULL) {\n    strncpy(dst, src, n);\n    return -1;\n}",
    "git rebase -i HEAD~3",
    '{\n  "name": "api",\n  "version": "1.2.0",\n  "dependencies": {\n    "express": "^4.18.2"\n'
    "  }\n}",
    "ls -la /var/log | grep nginx",
    "df.groupby('region')['sales'].sum().sort_values(ascending=False)",
]
TRACES = [
    'Traceback (most recent call last):\n  File "app.py", line 12, in <module>\n    main()\n'
    '  File "app.py", line 8, in main\n    data = json.loads(raw)\n'
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    'Exception in thread "main" java.lang.NullPointerException\n'
    "    at com.example.App.run(App.java:42)\n    at com.example.App.main(App.java:17)",
    "KeyError: 'user_id'",
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    "Error: ENOENT: no such file or directory, open '/app/config.json'",
]
URLS = [
    "https://docs.python.org/3/library/functions.html#sorted",
    "see https://example.com/help/reset-password",
    "https://t.co/abc123",
    "www.example.org/status",
    "here: https://github.com/acme/api/issues/1234",
]
LISTS = [
    "Steps I tried:\n- cleared the cache\n- restarted the app\n- reinstalled it",
    "I need:\nnumpy\npandas\nrequests\nflask",
    "Order numbers:\n10023\n10024\n10031",
    "1. open settings\n2. click on billing\n3. the page is blank",
]
SIGNOFFS = [
    "How do I add a second user to the {w}?\n\nBest regards,\n{name} {surname}",
    "Thanks, {name}",
    "The {w} export is still empty after the fix. Can you check again?\n\nCheers,\n{name}",
    "Please cancel order 10023, it was a mistake.\nKind regards, {name}",
]

JUNK_ONE_WORD = ["the", "is", "my", "help", "please", "now", "why", "a", "b", "c", "x", "ok"]
LAUGHS = ["ha", "haha", "lol", "xd", "xD", "hehe", "jaja", "kk", "rs", "ah", "lmao", "wow"]
EMOJI = ["😂", "🤣", "🔥", "👍", "😭", "💀", "❤️", "😍", "🙏", "✨", "😅", "🎉"]
SYMBOLS = "!@#$%^&*()_+-=[]{}|;:',.<>/?~`\\\"§±¤°"
MASH = [
    "asdfghjkl",
    "jjjjjjj",
    "hdjsjsjdjd",
    "qwrtplkm",
    "sdfsdf",
    "aksjdhfkajsdh",
    "fjdkslsl",
    "zxcvbnm",
    "lkjhgf",
    "xcvbnmm",
    "ghjkghjk",
    "mnbvcxz",
    "dfgdfgdfg",
    "ksksksks",
    "hjkl",
    "bnmbnm",
    "wxcvbn",
    "pfffft grrrr",
    "trhgfds",
    "nvmbvcx",
]
CLOSINGS = ["Best regards,", "Kind regards,", "Regards,", "Cheers,", "Sincerely,", "--"]
TITLES = ["Senior Engineer", "Account Manager", "Head of Support", "CTO"]
DISCLAIMERS = [
    "This e-mail and any attachments are confidential and may be privileged. If you are not "
    "the intended recipient, please notify the sender immediately and delete this message.",
    "CONFIDENTIALITY NOTICE: The information in this message is intended solely for the "
    "addressee. Any unauthorised use, disclosure or copying is strictly prohibited.",
    "The views expressed in this email are those of the author. We accept no liability for "
    "viruses. If you received this email in error, please delete it.",
    "Diese E-Mail ist vertraulich. This message is confidential and intended only for the "
    "named recipient; if you have received it in error, notify the sender.",
    "You are receiving this email because you signed up. Click here to unsubscribe. This "
    "email was sent by {company}.",
]
AUTO_REPLIES = [
    "Automatic reply: I am out of the office until {day} with limited access to email. "
    "For urgent matters, please contact {name} at [EMAIL].",
    "Thank you for your message. I am currently on annual leave and will be back on {day}. "
    "I will reply to your email upon my return.",
    "Out of office: I'm travelling with limited access to email. I will respond to your "
    "message when I return on {day}.",
    "Réponse automatique : je suis absent du bureau, de retour le {day}. Merci de votre message.",
    "Abwesenheitsnotiz: Ich bin bis {day} außer Haus. In dringenden Fällen wenden Sie sich an "
    "[EMAIL].",
    "Respuesta automática: estaré fuera de la oficina hasta el {day}. Gracias por su mensaje.",
    "Auto-reply: Thank you for your email. I'm away and will get back to you on {day}.",
]
DAYS = ["Monday", "12 January", "the 5th", "Friday", "2 March"]


def _docs_paragraphs() -> list[str]:
    """Real text: the paragraphs of CPython's reference topics (prose, grammar, code)."""
    from pydoc_data.topics import topics

    out = []
    for text in topics.values():
        for para in text.split("\n\n"):
            para = para.strip()
            if 20 <= len(para) <= 1500:
                out.append(para)
    return out


_DOCS: list[str] = []


def _docs(rng: random.Random) -> str:
    if not _DOCS:
        _DOCS.extend(_docs_paragraphs())
    return rng.choice(_DOCS)


def _fill(rng: random.Random, template: str) -> str:
    out = template
    while "{w}" in out:
        out = out.replace("{w}", rng.choice(WORDS), 1)
    return out.format(
        name=rng.choice(NAMES),
        surname=rng.choice(SURNAMES),
        company=rng.choice(COMPANIES),
        day=rng.choice(DAYS),
    )


def _one_word_lines(rng: random.Random) -> str:
    k = rng.randint(8, 30)
    pool = rng.choice([JUNK_ONE_WORD, WORDS, [rng.choice(LAUGHS)], list("abcdefghij")])
    return "\n".join(rng.choice(pool) for _ in range(k))


def _repeated_units(rng: random.Random) -> str:
    unit = rng.choice(LAUGHS)
    k = rng.randint(4, 12)
    sep = rng.choice(["", " ", " ", "! ", "\n"])
    text = sep.join([unit] * k)
    return rng.choice([text, text.upper(), text + "!!!", unit + unit[-1] * 2 + sep + text])


def _emoji_run(rng: random.Random) -> str:
    emoji = rng.choice(EMOJI)
    run = emoji * rng.randint(5, 15)
    word = rng.choice(["lol", "omg", "haha", "wow", "ok", "yes", "xd", "lmao"])
    return rng.choice(
        [
            f"{word} {run}",
            f"{run} {word}",
            f"{emoji * 3} {word} {emoji * 3} {word} {emoji * 3}",
            f"{word} {run} {word}",
            " ".join([f"{word} {emoji}"] * rng.randint(4, 8)),
        ]
    )


def _signature(rng: random.Random) -> str:
    name = f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"
    lines = [rng.choice(CLOSINGS), name, f"{rng.choice(TITLES)} | {rng.choice(COMPANIES)}"]
    lines += rng.sample(
        ["Tel: [PHONE]", "Mobile: [PHONE]", "Email: [EMAIL]", "www.example.com", "Fax: [PHONE]"],
        rng.randint(1, 3),
    )
    if rng.random() < 0.3:
        lines.append(rng.choice(["Sent from my iPhone", "Get Outlook for Android"]))
    return "\n".join(lines)


def _disclaimer(rng: random.Random) -> str:
    return _fill(rng, rng.choice(DISCLAIMERS))


def _auto_reply(rng: random.Random) -> str:
    return _fill(rng, rng.choice(AUTO_REPLIES))


def _symbol_soup(rng: random.Random) -> str:
    n = rng.randint(12, 40)
    chars = []
    for _ in range(n):
        r = rng.random()
        if r < 0.65:
            chars.append(rng.choice(SYMBOLS))
        elif r < 0.8:
            chars.append(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789"))
        else:
            chars.append(" ")
    return "".join(chars).strip() or "#a$"


def _keyboard_mash(rng: random.Random) -> str:
    words = rng.sample(MASH, rng.randint(1, 3))
    return rng.choice([" ".join(words), " ".join(words) + rng.choice(["", "!!", "??", " lol"])])


JUNK_FAMILIES = {
    "one_word_lines": _one_word_lines,
    "repeated_units": _repeated_units,
    "emoji_runs": _emoji_run,
    "signature": _signature,
    "disclaimer": _disclaimer,
    "auto_reply": _auto_reply,
    "symbol_soup": _symbol_soup,
    "keyboard_mash": _keyboard_mash,
}
NORMAL_FAMILIES = {
    "short": lambda rng: rng.choice(SHORT),
    "question": lambda rng: _fill(rng, rng.choice(QUESTIONS)),
    "long": lambda rng: _fill(rng, rng.choice(LONG)),
    "non_english": lambda rng: rng.choice(NON_ENGLISH),
    "code": lambda rng: rng.choice(CODE),
    "stack_trace": lambda rng: rng.choice(TRACES),
    "url": lambda rng: rng.choice(URLS),
    "list": lambda rng: rng.choice(LISTS),
    "signoff": lambda rng: _fill(rng, rng.choice(SIGNOFFS)),
    "docs": _docs,
}
# Share of each normal family in the traffic.
NORMAL_WEIGHTS = {
    "short": 0.25,
    "question": 0.2,
    "long": 0.15,
    "docs": 0.1,
    "non_english": 0.1,
    "code": 0.06,
    "stack_trace": 0.04,
    "url": 0.03,
    "list": 0.03,
    "signoff": 0.04,
}


def generate(n: int, junk_share: float = 0.05, seed: int = 7) -> list[tuple[str, str, bool]]:
    """``n`` messages as (text, family, is_junk); junk families in equal shares."""
    rng = random.Random(seed)
    junk = list(JUNK_FAMILIES)
    normal, weights = list(NORMAL_WEIGHTS), list(NORMAL_WEIGHTS.values())
    out = []
    for i in range(n):
        if rng.random() < junk_share:
            family = junk[i % len(junk)]
            out.append((JUNK_FAMILIES[family](rng), family, True))
        else:
            family = rng.choices(normal, weights)[0]
            out.append((NORMAL_FAMILIES[family](rng), family, False))
    return out


def evaluate(messages: list[tuple[str, str, bool]]) -> dict[str, tuple[int, int]]:
    """Per family: (messages, dropped)."""
    reasons = quality_signals(pa.array([m[0] for m in messages]))["garbage_reason"].to_pylist()
    total: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for (_, family, _), reason in zip(messages, reasons, strict=True):
        total[family] += 1
        dropped[family] += reason is not None
    return {f: (total[f], dropped[f]) for f in total}


# Length bands (UTF-8 bytes) of the throughput table.
BANDS = ((0, 63), (64, 255), (256, 1023), (1024, 1 << 30))


def timed(arr: pa.Array, repeat: int) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest of ``repeat`` runs of ``quality_signals``."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        quality_signals(arr)
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def print_throughput(texts: list[str], repeat: int, threads: list[int]) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"throughput (best of {repeat}; load average {load}, {os.cpu_count()} cores)")
    print(f"  {'set':<22}{'threads':>8}{'msgs':>9}{'wall s':>8}{'msgs/s':>10}{'CPU s':>8}", end="")
    print(f"{'msgs/CPU-s':>12}")
    sets = [("all", texts)]
    for lo, hi in BANDS:
        band = [t for t in texts if lo <= len(t.encode()) <= hi]
        label = f"{lo}-{hi} B" if hi < 1 << 30 else f"{lo}+ B"
        if band:
            sets.append((label, band))
    for n_threads in threads:
        quality.SCORE_THREADS = n_threads
        for label, band in sets:
            arr = pa.array(band)
            wall, cpu = timed(arr, repeat)
            n = len(band)
            print(f"  {label:<22}{n_threads:>8}{n:>9}{wall:8.2f}{n / wall:>10,.0f}", end="")
            print(f"{cpu:8.2f}{n / max(cpu, 1e-9):>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--junk", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="scoring threads to time, e.g. 1,2")
    args = parser.parse_args()
    messages = generate(args.messages, args.junk, args.seed)
    per = evaluate(messages)
    junk_total = junk_caught = normal_total = normal_dropped = 0
    print(f"{'family':<16}{'messages':>10}{'dropped':>10}{'share':>9}")
    for family in [*JUNK_FAMILIES, *NORMAL_FAMILIES]:
        if family not in per:
            continue
        n, d = per[family]
        print(f"{family:<16}{n:>10}{d:>10}{d / n:>9.3f}")
        if family in JUNK_FAMILIES:
            junk_total, junk_caught = junk_total + n, junk_caught + d
        else:
            normal_total, normal_dropped = normal_total + n, normal_dropped + d
    print(
        f"junk recall          {junk_caught / max(junk_total, 1):.3f} ({junk_caught}/{junk_total})"
    )
    print(
        f"normal removed       {100 * normal_dropped / max(normal_total, 1):.2f}% "
        f"({normal_dropped}/{normal_total})"
    )
    threads = [int(t) for t in args.threads.split(",") if t]
    print_throughput([m[0] for m in messages], args.repeat, threads)


if __name__ == "__main__":
    main()
