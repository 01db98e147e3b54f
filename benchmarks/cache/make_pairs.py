"""Write the semantic cache's calibration sets (benchmarks/cache/RESULTS.md, "The sets").

* ``false_hits.jsonl``: pairs (a, b) whose answers differ, in 11 categories, from
  hand-written templates with slot values swapped (a number, a negation, a polarity
  word, a name, a unit, a date, an object, the order of two things, an identifier, an
  added constraint, a question word). A cached answer to ``a`` served for ``b`` is a false hit.
* ``heldout_false_hits.jsonl``, ``heldout_paraphrases.jsonl``: hand-written pairs
  (``_heldout.py``), written after the verifier's word lists were set.
* ``paraphrases.jsonl``: pairs asking the same thing: ``handwritten`` rewordings
  (synonyms, reordering, another framing), and ``framing`` pairs made by rephrasing
  the frame of a base question ("How do I X?" / "What's the best way to X?").

Deterministic (seeded); written by the authors for this benchmark, not taken from any
data set. Run: ``.venv/bin/python benchmarks/cache/make_pairs.py``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

# -- false hits ------------------------------------------------------------------------

NUMBER_TEMPLATES = [
    "Convert {n} miles to kilometers", "What is {n} factorial?",
    "Give me {n} ideas for a birthday party", "How many calories are in {n} boiled eggs?",
    "Write a {n}-line poem about the sea", "What is {n}% of 250?", "Is {n} a prime number?",
    "Set a reminder {n} minutes before the meeting", "What is the square root of {n}?",
    "List {n} famous paintings from the Renaissance", "Explain the top {n} causes of inflation",
    "Split a bill of 120 dollars between {n} people", "What is {n} divided by 7?",
    "How long does it take to walk {n} km?", "Recommend {n} books about leadership",
    "What happened in Europe in {y}?", "Who won the football World Cup in {y}?",
    "What were the biggest tech trends of {y}?", "Which films won the Oscars in {y}?",
    "What does HTTP status code {c} mean?", "Explain what changed in Python 3.{v}",
    "Give me a workout plan for {w} days a week", "Name {w} countries in South America",
    "Suggest {w} names for a black cat", "Summarize the article in {w} sentences",
]
NUMBERS = [2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 64, 100, 144]
YEARS = [1914, 1918, 1929, 1945, 1969, 1989, 2001, 2008, 2016, 2020, 2022, 2023]
CODES = [200, 201, 301, 302, 400, 401, 403, 404, 409, 429, 500, 502, 503]
WORD_NUMBERS = ["two", "three", "four", "five", "six", "seven", "ten"]

NEGATION_PAIRS = [
    ("Which foods contain gluten?", "Which foods do not contain gluten?"),
    ("Is coffee good for your heart?", "Is coffee not good for your heart?"),
    ("Write a function that sorts a list using sort()",
     "Write a function that sorts a list without using sort()"),
    ("Which animals can swim?", "Which animals cannot swim?"),
    ("Why do cats purr?", "Why don't cats purr?"),
    ("What should I eat before running?", "What should I not eat before running?"),
    ("Which plants need direct sunlight?", "Which plants don't need direct sunlight?"),
    ("Is it safe to drink tap water in Mexico?", "Is it not safe to drink tap water in Mexico?"),
    ("List programming languages with garbage collection",
     "List programming languages without garbage collection"),
    ("What happens if I pay my credit card bill on time?",
     "What happens if I never pay my credit card bill on time?"),
    ("Which countries use the euro?", "Which countries do not use the euro?"),
    ("How do I make bread with yeast?", "How do I make bread without yeast?"),
    ("Why is my code throwing an exception?", "Why is my code not throwing an exception?"),
    ("Which vitamins are water soluble?", "Which vitamins are not water soluble?"),
    ("Can dogs eat grapes?", "Can dogs never eat grapes?"),
    ("Explain why the test passes", "Explain why the test doesn't pass"),
    ("Which metals are magnetic?", "Which metals are not magnetic?"),
    ("What are the symptoms of a cold with fever?",
     "What are the symptoms of a cold without fever?"),
    ("Should I include a cover letter?", "Should I not include a cover letter?"),
    ("Why does my car start in the cold?", "Why doesn't my car start in the cold?"),
    ("Which birds can fly?", "Which birds can't fly?"),
    ("How can I sleep with noise?", "How can I sleep with no noise?"),
    ("Write a SQL query for users who placed an order",
     "Write a SQL query for users who never placed an order"),
    ("Is Pluto a planet?", "Is Pluto not a planet?"),
    ("Which fruits are high in sugar?", "Which fruits are not high in sugar?"),
    ("Why is the build cached?", "Why is the build not cached?"),
    ("Give me a recipe that uses eggs", "Give me a recipe that uses no eggs"),
    ("Does the function modify its argument?", "Does the function not modify its argument?"),
    ("Which medications interact with alcohol?",
     "Which medications do not interact with alcohol?"),
    ("How do I travel with a pet?", "How do I travel without a pet?"),
    ("Explain a sentence that is grammatically correct",
     "Explain a sentence that is not grammatically correct"),
    ("Which mushrooms are edible?", "Which mushrooms are not edible?"),
    ("Why is my laptop charging?", "Why is my laptop not charging?"),
    ("Is the meeting required?", "Is the meeting not required?"),
    ("Which countries require a visa for US citizens?",
     "Which countries do not require a visa for US citizens?"),
    ("How do I write a cover letter with experience?",
     "How do I write a cover letter without experience?"),
    ("Which snakes are venomous?", "Which snakes are non venomous?"),
    ("Why does the page load?", "Why won't the page load?"),
    ("List jobs that require a degree", "List jobs that don't require a degree"),
    ("Is it true that goldfish have a three second memory?",
     "Is it not true that goldfish have a three second memory?"),
    ("How can I lose weight with exercise?", "How can I lose weight without exercise?"),
    ("Why do some people like cilantro?", "Why do some people not like cilantro?"),
    ("Which languages are spoken in Switzerland?",
     "Which languages are not spoken in Switzerland?"),
    ("Does the warranty cover water damage?", "Does the warranty not cover water damage?"),
    ("What foods are allowed on a keto diet?", "What foods are not allowed on a keto diet?"),
]

POLARITY = [
    ("enable", "disable", ["How do I {w} the firewall on Ubuntu?",
                           "{W} two-factor authentication on my Google account",
                           "Is it safe to {w} JavaScript in Chrome?"]),
    ("turn on", "turn off", ["How do I {w} dark mode on my iPhone?",
                             "{W} automatic updates in Windows",
                             "Why can't I {w} Bluetooth on my laptop?"]),
    ("increase", "decrease", ["How can I {w} my heart rate?",
                              "Ways to {w} the font size in VS Code",
                              "What happens if the central bank decides to {w} interest rates?"]),
    ("allow", "deny", ["How do I {w} camera access for Zoom on macOS?",
                       "Write an nginx rule to {w} requests from 10.0.0.0/8"]),
    ("before", "after", ["What should I eat {w} a workout?",
                         "What happened {w} the fall of the Berlin Wall?",
                         "Should I stretch {w} running?"]),
    ("add", "remove", ["How do I {w} a user to a group in Linux?",
                       "{W} an item from a Python dictionary"]),
    ("install", "uninstall", ["How do I {w} Docker on Ubuntu?", "{W} a package with pip"]),
    ("import", "export", ["How do I {w} contacts in Outlook?",
                          "{W} a CSV file in PostgreSQL"]),
    ("upload", "download", ["How do I {w} files to Google Drive?",
                            "{W} a file with curl"]),
    ("encrypt", "decrypt", ["How do I {w} a file with GPG?", "{W} a string with AES in Python"]),
    ("buy", "sell", ["When is the best time to {w} a house?", "Should I {w} bitcoin now?"]),
    ("advantages", "disadvantages", ["What are the {w} of remote work?",
                                     "List the {w} of nuclear energy"]),
    ("maximum", "minimum", ["Find the {w} value in a Python list",
                            "What is the {w} wage in Germany?"]),
    ("largest", "smallest", ["What is the {w} country in Africa?",
                             "Which is the {w} planet in the solar system?"]),
    ("highest", "lowest", ["What is the {w} mountain in Europe?",
                           "Which country has the {w} life expectancy?"]),
    ("best", "worst", ["What are the {w} foods for sleep?", "The {w} ways to start a speech"]),
    ("cheapest", "most expensive", ["What is the {w} city to live in Europe?",
                                    "Which is the {w} electric car?"]),
    ("start", "stop", ["How do I {w} a Docker container?", "{W} the nginx service on Linux"]),
    ("open", "close", ["How do I {w} a port on my router?", "{W} a file in Python"]),
    ("lock", "unlock", ["How do I {w} my screen on Windows?", "{W} a cell in Excel"]),
    ("connect", "disconnect", ["How do I {w} to a VPN on macOS?",
                               "{W} a Bluetooth speaker from my phone"]),
    ("accept", "reject", ["How do I politely {w} a job offer?", "{W} a pull request on GitHub"]),
    ("include", "exclude", ["How do I {w} a folder from a git repository?",
                            "{W} weekends when counting days in Excel"]),
    ("upper", "lower", ["Convert a string to {w} case in JavaScript",
                        "What causes pain in the {w} back?"]),
    ("above", "below", ["What does a blood pressure {w} 120 mean?",
                        "Filter rows {w} the average in pandas"]),
    ("north", "south", ["What is the weather like in {W} Korea?",
                        "Best places to visit in the {w} of France"]),
    ("hot", "cold", ["Is it better to take a {w} shower after exercise?",
                     "Why do I feel {w} all the time?"]),
    ("ascending", "descending", ["Sort a list in {w} order in Python",
                                 "Order SQL results in {w} order"]),
    ("subscribe", "unsubscribe", ["How do I {w} from a YouTube channel?"]),
    ("log in", "log out", ["How do I {w} of all devices on Netflix?"]),
    ("scale up", "scale down", ["How do I {w} a Kubernetes deployment?"]),
    ("zoom in", "zoom out", ["How do I {w} in Google Maps?"]),
    ("left", "right", ["What does pain on the {w} side of the chest mean?",
                       "How do I align text to the {w} in CSS?"]),
    ("win", "lose", ["How many games did the team {w} this season?"]),
    ("first", "last", ["Get the {w} element of an array in JavaScript",
                       "Who was the {w} emperor of Rome?"]),
    ("oldest", "newest", ["What is the {w} version of Python?",
                          "Which is the {w} university in England?"]),
    ("earliest", "latest", ["What is the {w} time I can check in?"]),
    ("more", "less", ["Why do I sleep {w} in winter?", "How can I spend {w} time on my phone?"]),
    ("increase", "reduce", ["How can I {w} my cholesterol?"]),
    ("hire", "fire", ["How do I {w} an employee in California?"]),
    ("inside", "outside", ["How do I keep a cat {w}?"]),
    ("input", "output", ["How do I read {w} in C++?"]),
    ("push", "pull", ["How do I {w} changes from GitHub?"]),
    ("send", "receive", ["How do I {w} money with PayPal?"]),
    ("true", "false", ["Why is this statement {w}: the Earth is flat?"]),
    ("positive", "negative", ["What does a {w} pregnancy test look like?"]),
    ("wet", "dry", ["How do I treat {w} cough?"]),
    ("morning", "night", ["Is it better to exercise at {w}?"]),
]

NAME_PAIRS = [
    ("What is the capital of {x}?", ["France", "Spain", "Italy", "Germany", "Canada",
                                    "Australia", "Brazil", "Japan", "Egypt", "Kenya"]),
    ("Who founded {x}?", ["Microsoft", "Apple", "Amazon", "Tesla", "Google", "Netflix"]),
    ("Summarize the plot of {x}", ["Hamlet", "Macbeth", "Othello", "Inception", "Titanic"]),
    ("Write a short biography of {x}", ["Marie Curie", "Albert Einstein", "Ada Lovelace",
                                       "Nikola Tesla", "Alan Turing"]),
    ("What is the population of {x}?", ["Tokyo", "Delhi", "Shanghai", "Lagos", "Paris"]),
    ("what's the weather like in {x} this week", ["paris", "berlin", "london", "madrid",
                                                   "rome", "vienna"]),
    ("how do i get from the airport to the city center in {x}",
     ["lisbon", "prague", "dublin", "oslo", "athens"]),
    ("Email {x} about the delayed shipment", ["John", "Maria", "Ahmed", "Priya", "Chen"]),
    ("What is {x} known for?", ["Leonardo da Vinci", "Michelangelo", "Raphael",
                                "Donatello", "Botticelli"]),
    ("Compare the iPhone 15 with the {x}", ["Pixel 8", "Galaxy S24", "OnePlus 12"]),
    ("What are the main features of {x}?", ["Kubernetes", "Terraform", "Ansible", "Jenkins"]),
    ("who wrote {x}", ["war and peace", "pride and prejudice", "the great gatsby",
                       "moby dick"]),
    ("Tell me about the history of the {x} empire", ["Roman", "Ottoman", "Mongol",
                                                     "Byzantine", "Persian"]),
]

UNIT_PAIRS = [
    ("How many {x} are in a cup of flour?", ["grams", "ounces", "tablespoons"]),
    ("What is 50 {x} in euros?", ["USD", "GBP", "CHF", "yen"]),
    ("Is 8 {x} of RAM enough for video editing?", ["GB", "MB"]),
    ("How far can I run in 30 {x}?", ["minutes", "seconds", "hours"]),
    ("Convert 180 {x} to feet", ["cm", "meters", "inches"]),
    ("What is a normal body temperature in {x}?", ["Celsius", "Fahrenheit", "Kelvin"]),
    ("How much does 1 {x} of gold cost today?", ["ounce", "gram", "kilogram"]),
    ("Is 100 {x} a fast internet speed?", ["Mbps", "Kbps", "Gbps"]),
    ("How many {x} should I sleep per night?", ["hours", "minutes"]),
    ("Price of 10 {x} of gasoline in California", ["gallons", "liters"]),
    ("How many calories does walking 5 {x} burn?", ["miles", "kilometers"]),
    ("What does it cost to charge an EV per {x}?", ["kWh", "mile", "month"]),
    ("Transfer 1000 {x} to my savings account", ["dollars", "euros", "pounds"]),
    ("Is 120 {x} a high speed on the highway?", ["mph", "kph"]),
    ("How many {x} of water should I drink a day?", ["liters", "cups", "ounces", "gallons"]),
]

DATE_PAIRS = [
    ("What day of the week was {x}?", ["March 3, 2021", "March 4, 2021", "June 3, 2021",
                                       "March 3, 2020"]),
    ("What is the weather forecast for {x}?", ["today", "tomorrow", "tonight", "the weekend"]),
    ("Plan a team lunch on {x}", ["Monday", "Tuesday", "Friday", "Sunday"]),
    ("What events are happening in Berlin in {x}?", ["January", "July", "October",
                                                      "December"]),
    ("What happened on July 20, {x}?", ["1969", "1968", "1970"]),
    ("Which holidays fall in {x}?", ["April", "November", "August"]),
    ("Book a flight to Rome for {x} morning", ["Saturday", "Thursday", "Wednesday"]),
    ("Summarize the news from {x}", ["yesterday", "today", "last week"]),
    ("What is the best season to visit Japan: {x}?", ["spring", "autumn", "winter",
                                                       "summer"]),
    ("Schedule the backup for {x} every day", ["2 am", "3 am", "11 pm"]),
    ("How many days until {x}?", ["Christmas", "Easter", "Halloween", "Thanksgiving"]),
    ("What was the stock price of Apple on {x}?", ["January 2, 2024", "January 3, 2024",
                                                   "February 2, 2024"]),
]

OBJECT_PAIRS = [
    ("How do I cook {x}?", ["rice", "pasta", "quinoa", "couscous", "lentils"]),
    ("Write a Python function to reverse a {x}", ["string", "list", "linked list",
                                                  "dictionary"]),
    ("What are the symptoms of {x}?", ["flu", "a cold", "covid", "strep throat",
                                       "allergies"]),
    ("Explain how a {x} works", ["car engine", "jet engine", "steam engine",
                                 "refrigerator", "heat pump"]),
    ("Give me a recipe for {x} cake", ["chocolate", "vanilla", "carrot", "lemon"]),
    ("How do I train my {x} to sit?", ["dog", "cat", "parrot", "rabbit"]),
    ("Write a poem about the {x}", ["sea", "mountains", "desert", "forest", "city"]),
    ("How do I get rid of {x} in my kitchen?", ["ants", "mice", "fruit flies",
                                                "cockroaches"]),
    ("what is the difference between a {x} and a stock", ["bond", "mutual fund", "option",
                                                          "etf"]),
    ("How do I clean a {x}?", ["cast iron pan", "stainless steel pan", "wooden cutting board",
                               "glass stovetop"]),
    ("Write a unit test for the {x} class", ["User", "Order", "Invoice", "Cart"]),
    ("how often should i water a {x}", ["cactus", "fern", "orchid", "succulent"]),
    ("Explain the rules of {x}", ["chess", "checkers", "poker", "bridge", "go"]),
    ("What is the best way to learn {x}?", ["guitar", "piano", "violin", "drums"]),
    ("How do I change a {x} on my bike?", ["tire", "chain", "brake pad"]),
]

SWAP_PAIRS = [
    ("Convert 100 {x} to {y}", [("miles", "kilometers"), ("dollars", "euros"),
                                ("Celsius", "Fahrenheit"), ("pounds", "kilograms"),
                                ("liters", "gallons"), ("inches", "centimeters")]),
    ("Translate 'good morning' from {x} to {y}", [("English", "French"),
                                                  ("Spanish", "German"),
                                                  ("Italian", "Portuguese"),
                                                  ("Japanese", "Korean")]),
    ("Is a {x} faster than a {y}?", [("cheetah", "horse"), ("train", "plane"),
                                     ("bicycle", "scooter"), ("dolphin", "shark")]),
    ("How do I migrate a database from {x} to {y}?", [("MySQL", "PostgreSQL"),
                                                      ("MongoDB", "DynamoDB"),
                                                      ("SQLite", "MySQL")]),
    ("Write a program that converts {x} to {y}", [("JSON", "YAML"), ("CSV", "JSON"),
                                                  ("XML", "JSON"), ("Markdown", "HTML")]),
    ("Why is {x} more popular than {y}?", [("Python", "Ruby"), ("React", "Angular"),
                                           ("football", "rugby")]),
    ("Rewrite this {x} code in {y}", [("Java", "Kotlin"), ("JavaScript", "TypeScript"),
                                      ("Python", "Go")]),
    ("how much does it cost to fly from {x} to {y}", [("london", "new york"),
                                                      ("paris", "tokyo"),
                                                      ("sydney", "auckland")]),
    ("Is it cheaper to ship from {x} to {y}?", [("China", "Germany"), ("Mexico", "Canada")]),
    ("Should I switch from {x} to {y}?", [("Windows", "Linux"), ("Android", "iOS"),
                                          ("Spotify", "Apple Music")]),
]

IDENTIFIER_PAIRS = [
    ("What does the error {x} mean?", ["ECONNREFUSED", "ETIMEDOUT", "ENOENT", "EACCES"]),
    ("Fix the bug in {x}", ["utils.py", "main.py", "app.js", "server.go"]),
    ("What does the {x} command do?", ["git rebase", "git merge", "git reset", "git revert",
                                       "git stash"]),
    ("What port does {x} use?", ["SSH", "FTP", "SMTP", "RDP", "DNS"]),
    ("Explain the {x} header", ["Content-Type", "Cache-Control", "Authorization",
                                "Accept-Encoding"]),
    ("Why does {x} return None?", ["dict.get", "list.sort", "str.find", "os.getenv"]),
    ("What is in the {x} file?", ["/etc/hosts", "/etc/passwd", "/etc/fstab"]),
    ("Explain the {x} flag of ls", ["-l", "-a", "-h", "-R"]),
    ("What does the HTTP method {x} do?", ["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ("Look up order {x}", ["A-1042", "A-1043", "B-1042"]),
]

CONSTRAINT_PAIRS = [
    ("How do I cook rice?", "How do I cook rice in a microwave?"),
    ("Write a poem about love", "Write a sad poem about love"),
    ("Give me a recipe for pancakes", "Give me a recipe for vegan pancakes"),
    ("Explain quantum computing", "Explain quantum computing to a child"),
    ("List exercises for back pain", "List exercises for lower back pain"),
    ("How do I make coffee?", "How do I make iced coffee?"),
    ("Write a cover letter", "Write a cover letter for a nursing job"),
    ("Suggest a name for my startup", "Suggest a funny name for my startup"),
    ("How do I learn Spanish?", "How do I learn Spanish fast?"),
    ("Write a SQL query to count users", "Write a SQL query to count active users"),
    ("What is a good laptop?", "What is a good gaming laptop?"),
    ("Plan a trip to Italy", "Plan a budget trip to Italy"),
    ("How do I bake bread?", "How do I bake sourdough bread?"),
    ("Explain recursion", "Explain recursion with an example in Haskell"),
    ("Write a function to sort a list", "Write a function to sort a list in place"),
    ("How do I invest money?", "How do I invest money for retirement?"),
    ("Summarize the history of Rome", "Summarize the economic history of Rome"),
    ("Describe the water cycle", "Describe the water cycle for a science exam"),
    ("Give me tips for running", "Give me tips for running in the rain"),
    ("What is a healthy breakfast?", "What is a healthy breakfast for diabetics?"),
    ("How do I paint a room?", "How do I paint a room with dark walls?"),
    ("Recommend a movie", "Recommend a horror movie"),
    ("How do I write a resume?", "How do I write a resume for my first job?"),
    ("Translate this email into French", "Translate this email into formal French"),
    ("Write a birthday message", "Write a birthday message for my boss"),
    ("How do I remove a stain?", "How do I remove a wine stain from carpet?"),
    ("What is the best programming language?",
     "What is the best programming language for data science?"),
    ("How do I grow tomatoes?", "How do I grow tomatoes indoors?"),
    ("Explain how vaccines work", "Explain how mRNA vaccines work"),
    ("Create a workout plan", "Create a workout plan for beginners at home"),
    ("How do I set up a router?", "How do I set up a mesh router?"),
    ("Write a Python script to read a file", "Write a Python script to read a large file"),
    ("Describe a cat", "Describe a cat in the style of Shakespeare"),
    ("What should I pack for a trip?", "What should I pack for a ski trip?"),
    ("How do I negotiate salary?", "How do I negotiate salary for a remote job?"),
    ("Tell me a joke", "Tell me a joke about programmers"),
    ("How do I clean my oven?", "How do I clean my oven with baking soda?"),
    ("Explain inflation", "Explain inflation in Argentina"),
    ("Draft an apology email", "Draft an apology email to a customer"),
    ("How do I center a div?", "How do I center a div vertically?"),
]

WH_PAIRS = [
    ("When was the Eiffel Tower built?", "Why was the Eiffel Tower built?"),
    ("Where was Albert Einstein born?", "When was Albert Einstein born?"),
    ("Who invented the telephone?", "When was the telephone invented?"),
    ("Why did the Roman Empire fall?", "When did the Roman Empire fall?"),
    ("Where do penguins live?", "Why do penguins live in cold places?"),
    ("Who painted the Mona Lisa?", "Where is the Mona Lisa?"),
    ("When does the store open?", "Where does the store open?"),
    ("Why is the sky blue?", "When is the sky blue?"),
    ("Which planet is the hottest?", "Why is Venus the hottest planet?"),
    ("Who won the election?", "When is the election?"),
    ("Where can I buy a train ticket?", "When can I buy a train ticket?"),
    ("When should I plant tulips?", "Where should I plant tulips?"),
    ("Why do leaves change color?", "When do leaves change color?"),
    ("Who discovered penicillin?", "Why was penicillin important?"),
    ("Where is the nearest hospital?", "Which hospital is the nearest?"),
    ("When was the Declaration of Independence signed?",
     "Where was the Declaration of Independence signed?"),
    ("Who built the pyramids?", "Why were the pyramids built?"),
    ("When did World War 1 start?", "Why did World War 1 start?"),
    ("Where does coffee come from?", "When did people start drinking coffee?"),
    ("Why do we dream?", "When do we dream?"),
]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _swap_slot(rng: random.Random, template: str, values: list[str], key: str,
               count: int) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(count):
        x, y = rng.sample(values, 2)
        pairs.append((template.format(**{key: x}), template.format(**{key: y})))
    return pairs


def _numbers(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for template in NUMBER_TEMPLATES:
        for _ in range(3):
            if "{y}" in template:
                a, b = rng.sample(YEARS, 2)
                out.append((template.format(y=a), template.format(y=b)))
            elif "{c}" in template:
                a, b = rng.sample(CODES, 2)
                out.append((template.format(c=a), template.format(c=b)))
            elif "{v}" in template:
                a, b = rng.sample(range(6, 14), 2)
                out.append((template.format(v=a), template.format(v=b)))
            elif "{w}" in template:
                a, b = rng.sample(WORD_NUMBERS, 2)
                out.append((_cap(template.format(w=a)), _cap(template.format(w=b))))
            else:
                a, b = rng.sample(NUMBERS, 2)
                out.append((template.format(n=a), template.format(n=b)))
    return out


def _polarity() -> list[tuple[str, str]]:
    out = []
    for plus, minus, templates in POLARITY:
        for template in templates:
            a = template.format(w=plus, W=_cap(plus))
            b = template.format(w=minus, W=_cap(minus))
            out.append((a, b))
    return out


def _slots(rng: random.Random, table: list[tuple[str, list[str]]], per: int
           ) -> list[tuple[str, str]]:
    out = []
    for template, values in table:
        n = min(per, len(values) * (len(values) - 1) // 2)
        seen: set[tuple[str, str]] = set()
        while len(seen) < n:
            x, y = rng.sample(values, 2)
            if (y, x) in seen:
                continue
            seen.add((x, y))
        out += [(_cap(template.format(x=x)) if template[0].isupper() else
                 template.format(x=x),
                 _cap(template.format(x=y)) if template[0].isupper() else
                 template.format(x=y)) for x, y in sorted(seen)]
    return out


def _swaps() -> list[tuple[str, str]]:
    return [(t.format(x=x, y=y), t.format(x=y, y=x)) for t, pairs in SWAP_PAIRS
            for x, y in pairs]


def false_hits() -> list[dict[str, str]]:
    rng = random.Random(13)
    sets = {
        "number": _numbers(rng),
        "negation": NEGATION_PAIRS,
        "polarity": _polarity(),
        "name": _slots(rng, NAME_PAIRS, 5),
        "unit": _slots(rng, UNIT_PAIRS, 3),
        "date": _slots(rng, DATE_PAIRS, 4),
        "object": _slots(rng, OBJECT_PAIRS, 4),
        "order": _swaps(),
        "identifier": _slots(rng, IDENTIFIER_PAIRS, 4),
        "constraint": CONSTRAINT_PAIRS,
        "question-word": WH_PAIRS,
    }
    rows = []
    for category, pairs in sets.items():
        for i, (a, b) in enumerate(pairs):
            rows.append({"id": f"{category}-{i}", "category": category, "a": a, "b": b})
    return rows


# -- paraphrases -----------------------------------------------------------------------

#: Rewordings as different people would ask the same thing.
HANDWRITTEN = [
    ("How do I enable the firewall on Ubuntu?", "How can I turn on the firewall in Ubuntu?"),
    ("What is the capital of Australia?", "What's Australia's capital city?"),
    ("How do I cook rice?", "What is the best way to cook rice?"),
    ("Is it safe to eat raw eggs?", "Can I safely eat eggs raw?"),
    ("Write a Python function to reverse a string",
     "Write a python function that reverses a string"),
    ("Summarize the French Revolution", "Give me a summary of the French Revolution"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
    ("What causes rainbows?", "What is the cause of rainbows?"),
    ("Explain photosynthesis simply", "Explain photosynthesis in simple terms"),
    ("How do I fix a leaking tap?", "How can I repair a leaking tap?"),
    ("What are the benefits of meditation?", "What are the advantages of meditation?"),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("How do I remove a directory in Linux?", "How do I delete a directory in Linux?"),
    ("What is the boiling point of water?", "At what temperature does water boil?"),
    ("Give me tips for better sleep", "Give me some tips to sleep better"),
    ("How do I create a virtual environment in Python?",
     "How to create a Python virtual environment?"),
    ("What does DNA stand for?", "What is DNA short for?"),
    ("How do I center a div in CSS?", "How can I center a div with CSS?"),
    ("What's the difference between a virus and a bacterium?",
     "How does a virus differ from a bacterium?"),
    ("Translate 'thank you' into Japanese", "How do you say 'thank you' in Japanese?"),
    ("How long should I boil an egg?", "For how long do I boil an egg?"),
    ("What is the speed of light?", "How fast is the speed of light?"),
    ("Recommend a good book about habits", "Can you suggest a good book on habits?"),
    ("How do I undo the last git commit?", "How can I undo my last commit in git?"),
    ("Why is the sky blue?", "Why does the sky look blue?"),
    ("What is machine learning?", "Can you explain what machine learning is?"),
    ("How do I make a cup of tea?", "How to make a cup of tea?"),
    ("What are the symptoms of dehydration?", "What symptoms does dehydration cause?"),
    ("How do I change my password on Gmail?", "How can I change my Gmail password?"),
    ("Who painted the Mona Lisa?", "Who was the painter of the Mona Lisa?"),
    ("How do I install Node.js on Windows?", "How to install Node.js on Windows?"),
    ("What is the tallest building in the world?",
     "Which building is the tallest in the world?"),
    ("Explain the theory of relativity", "Can you explain the theory of relativity?"),
    ("How can I improve my credit score?", "How do I improve my credit score?"),
    ("What is the population of Canada?", "How many people live in Canada?"),
    ("How do I convert a list to a set in Python?",
     "How can I turn a Python list into a set?"),
    ("Write a haiku about autumn", "Compose a haiku about autumn"),
    ("What are good exercises for the core?", "Which exercises are good for the core?"),
    ("Tell me a fun fact about octopuses", "Give me a fun fact about octopuses"),
    ("How do I merge two dictionaries in Python?",
     "What is the way to merge two dictionaries in Python?"),
    ("How do vaccines work?", "How does a vaccine work?"),
    ("What is the meaning of life?", "What's the meaning of life?"),
    ("How can I learn to code quickly?", "How do I learn to code fast?"),
    ("What is an API?", "Explain what an API is"),
    ("Describe the water cycle", "Explain the water cycle"),
    ("How do I get a stain out of a shirt?", "How to get a stain out of a shirt?"),
    ("What should I do if I can't sleep?", "What should I do when I can't sleep?"),
    ("What's a healthy breakfast?", "What is a healthy breakfast?"),
    ("How do I start a podcast?", "How can I start my own podcast?"),
    ("How do I find the length of a list in Python?",
     "How to get the length of a Python list?"),
    ("Why do cats purr?", "What makes cats purr?"),
    ("What is the largest ocean on Earth?", "Which ocean is the largest on Earth?"),
    ("How do I write a good resume?", "Tips for writing a good resume"),
    ("How much water should I drink a day?", "How much water should I drink daily?"),
    ("What are black holes?", "Explain black holes"),
    ("How do I reset my iPhone?", "How can I reset an iPhone?"),
    ("Give me a recipe for banana bread", "Share a recipe for banana bread"),
    ("How do I read a CSV file in pandas?", "How to read a CSV file with pandas?"),
    ("What is inflation?", "Can you explain inflation?"),
    ("How do I stop procrastinating?", "How can I stop procrastinating?"),
    ("What language is spoken in Brazil?", "Which language do people speak in Brazil?"),
    ("How does a refrigerator work?", "How do refrigerators work?"),
    ("What is the plot of Hamlet?", "Summarize the plot of Hamlet"),
    ("How do I take a screenshot on a Mac?", "How can I take a screenshot on my Mac?"),
    ("Why do we have leap years?", "What is the reason for leap years?"),
    ("What is the difference between weather and climate?",
     "How do weather and climate differ?"),
    ("How do I make my website faster?", "How can I speed up my website?"),
    ("Write a short story about a dragon", "Write a brief story about a dragon"),
    ("How do I sort a dictionary by value in Python?",
     "Sort a Python dictionary by its values"),
    ("What is the GDP of Japan?", "What's Japan's GDP?"),
    ("What is a prime number?", "Define a prime number"),
    ("How do I care for a succulent?", "How should I take care of a succulent?"),
    ("Why is exercise important?", "Why is it important to exercise?"),
    ("How do I calm down when anxious?", "How can I calm down when I feel anxious?"),
    ("Explain how the stock market works", "How does the stock market work?"),
    ("What are the rules of chess?", "Explain the rules of chess"),
    ("How can I save money on groceries?", "Ways to save money on groceries"),
    ("How do I get better at public speaking?", "How can I improve at public speaking?"),
    ("How do I clean a cast iron pan?", "What's the best way to clean a cast iron pan?"),
    ("What year did the Titanic sink?", "When did the Titanic sink?"),
    ("How do I connect to Wi-Fi on Windows 11?", "How to connect to Wi-Fi in Windows 11?"),
    ("What is a good name for a golden retriever?",
     "Suggest a good name for a golden retriever"),
    ("How do I write a for loop in JavaScript?",
     "How to write a for loop in JavaScript?"),
    ("What does a product manager do?", "What is the job of a product manager?"),
    ("How can I reduce stress at work?", "How do I reduce stress at work?"),
    ("Who was the first person on the moon?", "Who first walked on the moon?"),
    ("What is the chemical formula for water?", "What's the chemical formula of water?"),
    ("How do I make pancakes?", "Recipe for pancakes"),
    ("How do I check my Python version?", "How to check which Python version I have?"),
    ("What are the main causes of climate change?",
     "What mainly causes climate change?"),
    ("How do I tie a tie?", "How to tie a tie?"),
    ("Explain the difference between TCP and UDP", "What is the difference between TCP and UDP?"),
    ("How do I grow basil indoors?", "How can I grow basil inside?"),
    ("What is the fastest land animal?", "Which land animal is the fastest?"),
    ("How do I format a date in JavaScript?", "How to format dates in JavaScript?"),
    ("Why do onions make you cry?", "Why does cutting onions make you cry?"),
    ("What is the best way to learn a language?", "How do I best learn a language?"),
    ("How do I set up SSH keys on GitHub?", "How to set up SSH keys for GitHub?"),
    ("What are the planets in the solar system?",
     "List the planets in the solar system"),
    ("How do I make cold brew coffee?", "How to make cold brew coffee?"),
]

#: Base questions rephrased by the frames below.
BASE_TASKS = [
    "cook quinoa", "bake chocolate chip cookies", "train for a marathon", "write a cover letter",
    "install Docker on Ubuntu", "reverse a linked list in Java", "remove a virus from my PC",
    "grow tomatoes on a balcony", "learn to play the guitar", "change a flat tire",
    "prepare for a job interview", "make sourdough bread", "file taxes as a freelancer",
    "get rid of fruit flies", "build a website with React", "clean a laptop keyboard",
    "improve my posture", "start investing with little money", "back up my iPhone",
    "negotiate a higher salary", "write unit tests in Python", "paint a bedroom",
    "make a budget spreadsheet", "fall asleep faster", "teach a dog to sit",
    "deploy a Flask app to Heroku", "brew beer at home", "memorize a speech",
    "set up a home network", "meditate for beginners",
]
FRAMES = [
    ("How do I {t}?", "What's the best way to {t}?"),
    ("How do I {t}?", "Can you tell me how to {t}?"),
    ("How do I {t}?", "how do i {t}"),
    ("How can I {t}?", "Please explain how to {t}"),
    ("How do I {t}?", "I want to know how to {t}"),
    ("Steps to {t}", "How do I {t}?"),
]


def paraphrases() -> list[dict[str, str]]:
    rng = random.Random(7)
    rows = [{"id": f"handwritten-{i}", "category": "handwritten", "a": a, "b": b}
            for i, (a, b) in enumerate(HANDWRITTEN)]
    for i, task in enumerate(BASE_TASKS):
        for j, (fa, fb) in enumerate(rng.sample(FRAMES, 3)):
            b = fb.format(t=task.lower() if fb[0].islower() else task)
            rows.append({"id": f"framing-{i}-{j}", "category": "framing",
                         "a": fa.format(t=task), "b": b})
    return rows


def heldout() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    import _heldout

    def rows(first: list[tuple[str, str]], second: list[tuple[str, str]]
             ) -> list[dict[str, str]]:
        return ([{"id": f"heldout1-{i}", "category": "heldout-1", "a": a, "b": b}
                 for i, (a, b) in enumerate(first)]
                + [{"id": f"heldout2-{i}", "category": "heldout-2", "a": a, "b": b}
                   for i, (a, b) in enumerate(second)])

    return (rows(_heldout.FALSE_HITS, _heldout.FALSE_HITS_2),
            rows(_heldout.PARAPHRASES, _heldout.PARAPHRASES_2))


def main() -> None:
    held_false, held_para = heldout()
    for name, rows in (("false_hits", false_hits()), ("paraphrases", paraphrases()),
                       ("heldout_false_hits", held_false),
                       ("heldout_paraphrases", held_para)):
        path = HERE / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["category"]] = counts.get(r["category"], 0) + 1
        print(f"{path.name}: {len(rows)} pairs {counts}")


if __name__ == "__main__":
    main()
