"""The fixed texts demo chat sessions are made of: questions, replies, noise and fake PII.

All written for this demo (or well-known test values, such as Luhn-valid test card numbers).
"""

from __future__ import annotations

PII_KINDS: tuple[str, ...] = ("email", "phone", "credit_card", "ipv4")

GARBAGE_MESSAGES: tuple[str, ...] = (
    "asdkjh qwe!!! ###$$$",
    "????????",
    "jjjjjjjjjjjjjjjjjjjjjjjj",
    "qwertyuiop asdfghjkl zxcvbnm",
    "!!!!!!!!!!!!!!",
    "lkjh lkjh lkjh ;;;; lkjh",
    "$$$$%%%%^^^^&&&&****",
    "zzzzzzzzzzzzzzzzzzzz",
    "fgdfg dfgdfg sdfsdf 123123 !!!",
    ".........",
)

EMPTY_MESSAGES: tuple[str, ...] = ("", " ", "   ", "\n", "\t  ", " \n ")

# (language, user question, assistant answer), written for this demo.
NON_ENGLISH_SESSIONS: tuple[tuple[str, str, str], ...] = (
    (
        "de",
        "Kannst du mir bitte erklären, wie man in Python eine Liste sortiert, ohne die "
        "ursprüngliche Liste zu verändern?",
        "Du kannst die eingebaute Funktion sorted verwenden, denn sie gibt immer eine neue "
        "sortierte Liste zurück. Die ursprüngliche Liste bleibt dabei vollständig unverändert, "
        "und du kannst sie danach weiterhin ganz normal benutzen.",
    ),
    (
        "de",
        "Warum bekomme ich einen Fehler, wenn ich in einer Schleife über ein Wörterbuch "
        "gehe und gleichzeitig Einträge lösche?",
        "Ein Wörterbuch darf während der Iteration nicht seine Größe ändern, deshalb meldet "
        "Python einen Laufzeitfehler. Erstelle am besten zuerst eine Liste der Schlüssel und "
        "lösche die Einträge danach in einer zweiten Schleife.",
    ),
    (
        "fr",
        "Pouvez-vous m'expliquer comment lire un fichier texte ligne par ligne avec Python, "
        "s'il vous plaît ?",
        "Vous pouvez ouvrir le fichier avec l'instruction with et parcourir l'objet fichier "
        "dans une boucle for. Chaque itération vous donne une ligne, et le fichier est fermé "
        "automatiquement à la fin du bloc.",
    ),
    (
        "fr",
        "Quelle est la différence entre une liste et un tuple en Python, et quand faut-il "
        "utiliser l'un ou l'autre ?",
        "Une liste peut être modifiée après sa création, alors qu'un tuple reste toujours "
        "identique. On utilise souvent un tuple pour un petit groupe de valeurs fixes et une "
        "liste pour une collection qui change.",
    ),
    (
        "es",
        "¿Me puedes explicar cómo funcionan los diccionarios en Python y cuándo debería "
        "usarlos en mis programas?",
        "Un diccionario guarda pares de clave y valor, y permite encontrar un valor muy "
        "rápidamente a partir de su clave. Es muy útil cuando necesitas buscar datos por un "
        "nombre o un identificador en lugar de una posición.",
    ),
    (
        "es",
        "¿Por qué mi función devuelve siempre None aunque dentro de ella calculo el "
        "resultado correctamente?",
        "Probablemente la función no tiene una instrucción return al final, y en ese caso "
        "Python devuelve None de forma automática. Añade return seguido del valor calculado "
        "para que la función entregue el resultado.",
    ),
)

_QUESTION_TEMPLATES: tuple[str, ...] = (
    "How {does} {subject} work in Python?",
    "Can you explain {subject}?",
    "Could you give me a short overview of {subject}?",
    "I'm confused about {subject}. Can you help me understand it?",
    "What should I know about {subject} when writing Python code?",
    "Please explain {subject} in simple terms.",
    "I keep getting {subject} wrong. What are the rules?",
)
_FOLLOW_UP_TEMPLATES: tuple[str, ...] = (
    "Thanks! Can you tell me a bit more?",
    "What else should I keep in mind about {subject}?",
    "Could you go into more detail on that?",
    "Is there anything surprising about {subject} that I should watch out for?",
)
_ANSWER_PREFIXES: tuple[str, ...] = ("", "", "Sure. ", "Good question. ")
_EMPTY_REPLY = "It looks like your message was empty. What would you like to know about Python?"
_GARBAGE_REPLY = (
    "Sorry, I could not understand that message. Could you rephrase your question about Python?"
)
_MOJIBAKE_PREFIX = "I read about this in a café in Zürich last week, so: "
_NEAR_DUP_WORDS: tuple[str, ...] = ("basically", "actually", "essentially", "simply", "really")

_FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
_LAST_NAMES = ("smith", "jones", "garcia", "miller", "davis", "lopez", "wilson", "moore")
_EMAIL_DOMAINS = ("example.com", "mail.example.org", "example.net")
_AREA_CODES = ("415", "212", "646", "312", "617")
# Luhn-valid test card numbers, in the usual printed groupings.
_CARDS = (
    "4111 1111 1111 1111",
    "5500 0000 0000 0004",
    "4012-8888-8888-1881",
    "3782 822463 10005",
    "6011 1111 1111 1117",
)
_PII_TEMPLATES = {
    "email": ("My email is {v}, in case you need it. ", "You can reach me at {v} later. "),
    "phone": ("Call me at {v} if that is easier. ", "My number is {v}. "),
    "credit_card": ("Also my card {v} got charged twice, but first: ",),
    "ipv4": ("I'm testing this on the server at {v} right now. ",),
}

_NOT_JSON_LINES = (
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "ERROR upstream connection reset by peer",
    "conversation_id=abc123 turn=3 role=user content=hello",
    "Traceback (most recent call last):",
)
