"""Word lists and templates for the realistic check set (``realistic.py``).

Written by hand for issue 9 (items 6 and 7), without looking at the detector's lexicon or
cue lists: general medical questions with no person in them (must stay unflagged), and the
classes the guard missed on independent samples (spaced SSNs after a cue, insurance member
IDs, names after self-introductions in six languages, national phone numbers written as one
digit run), plus person-tied health texts (must stay found).

``{slot}`` marks a gold value; ``<drug>``, ``<cond>`` and ``<drug2>``, ``<cond2>`` are filled
with health terms that are not gold (general knowledge). Every template ends up in the set.
"""

from __future__ import annotations

__all__ = [
    "CLEAN_EN", "CLEAN_INTL", "CLEAN_OTHER", "CONDITIONS", "DRUGS", "INTRO", "MEMBER",
    "NAMES", "PHONE", "SSN", "TIED",
]

DRUGS = [
    "metoprolol", "lisinopril", "amlodipine", "atorvastatin", "metformin", "levothyroxine",
    "omeprazole", "sertraline", "fluoxetine", "warfarin", "apixaban", "ibuprofen",
    "paracetamol", "amoxicillin", "prednisone", "insulin glargine", "salbutamol", "montelukast",
    "gabapentin", "hydrochlorothiazide", "losartan", "simvastatin", "clopidogrel",
    "escitalopram", "tramadol", "semaglutide", "empagliflozin", "doxycycline", "cetirizine",
    "allopurinol", "bisoprolol", "spironolactone", "furosemide", "rivaroxaban", "venlafaxine",
]
CONDITIONS = [
    "type 2 diabetes", "hypertension", "asthma", "COPD", "migraine", "atrial fibrillation",
    "heart failure", "hypothyroidism", "rheumatoid arthritis", "osteoporosis", "depression",
    "generalized anxiety disorder", "gout", "psoriasis", "Crohn's disease", "celiac disease",
    "chronic kidney disease", "pneumonia", "shingles", "Lyme disease", "iron deficiency anemia",
    "sleep apnea", "epilepsy", "Parkinson's disease", "multiple sclerosis", "endometriosis",
    "glaucoma", "tuberculosis", "hepatitis C", "influenza", "type 1 diabetes", "angina",
]

# General medical questions and requests: no individual, sometimes a first-person frame
# ("I'm a nursing student", "help me understand") that is not about the writer's health.
CLEAN_EN = [
    "Explain how <drug> lowers blood pressure.",
    "Explain how <drug> works in the body.",
    "Describe the symptoms of <cond>.",
    "describe the symptoms of <cond>",
    "What are the early warning signs of <cond>?",
    "What is the usual starting dose of <drug> for adults?",
    "What are the most common side effects of <drug>?",
    "Can <drug> be taken together with <drug2>?",
    "Is it safe to take <drug> during pregnancy?",
    "How is <cond> diagnosed?",
    "What lifestyle changes help people with <cond>?",
    "Summarise the current guidelines for treating <cond>.",
    "Compare <drug> and <drug2>: mechanism, side effects and monitoring.",
    "Why do patients with <cond> need regular blood tests?",
    "How long does it take for <drug> to start working?",
    "What should patients know before starting <drug>?",
    "Write a patient leaflet explaining <cond> in plain language.",
    "What is the difference between <cond> and <cond2>?",
    "Which lab values should be monitored in patients taking <drug>?",
    "How common is <cond> in adults over 65?",
    "What causes <cond>, and can it be prevented?",
    "Create a quiz with five questions about <cond> for nursing students.",
    "When should someone with <cond> see a doctor urgently?",
    "List the drug interactions of <drug> that pharmacists should check.",
    "Can you explain the pathophysiology of <cond>?",
    "I'm a nursing student; can you explain how <drug> works?",
    "I'm preparing a lecture on <cond>. Give me an outline with key references.",
    "Help me understand the difference between <drug> and <drug2>.",
    "For my pharmacology exam, summarise the adverse effects of <drug>.",
    "Can you tell me what the symptoms of <cond> are?",
    "I want to understand why <drug> is used for <cond>.",
    "How do doctors decide whether to start <drug> in someone with <cond>?",
    "Why is <drug> avoided in people with <cond>?",
    "What is the half-life of <drug>, and how often is it dosed?",
    "Does <drug> cause weight gain?",
    "What is the maximum daily dose of <drug>?",
    "How does <cond> affect the heart and kidneys over time?",
    "Translate into Spanish: '<drug> can cause dizziness, so stand up slowly.'",
    "Give a one-paragraph overview of <cond> for a general audience.",
    "What are the first-line treatments for <cond> in children?",
    "A patient with <cond> asks whether exercise is safe. What does the evidence say?",
    "Is <cond> hereditary?",
    "What foods should be avoided while taking <drug>?",
    "Why do some people taking <drug> develop a cough?",
    "How should <drug> be stored, and does it expire?",
    "Write three multiple-choice questions on the mechanism of <drug>.",
    "What percentage of people with <cond> are undiagnosed?",
    "Is there a vaccine against <cond>?",
    "What is the prognosis of <cond> with modern treatment?",
    "I'm writing an article about <cond>; what are the latest research findings?",
    "Outline the WHO recommendations on <cond> screening.",
    "How do <drug> and <drug2> differ in cost and effectiveness?",
    "In simple terms, what does <drug> do?",
    "What happens if someone misses a dose of <drug>?",
    "Which specialists usually manage <cond>?",
    "What tests confirm <cond>, and how accurate are they?",
    "Are there natural alternatives to <drug>? Please cite studies.",
    "Could you summarise the NICE guideline on <cond> in five bullet points?",
    "What is the role of <drug> in the management of <cond>?",
    "How does alcohol interact with <drug>?",
]
CLEAN_INTL = [
    "Erklären Sie, wie <drug> den Blutdruck senkt.",
    "Welche Nebenwirkungen hat <drug>?",
    "Wie wird <cond> diagnostiziert?",
    "Ich bin Medizinstudentin. Können Sie mir erklären, wie <drug> wirkt?",
    "Quels sont les effets secondaires du <drug> ?",
    "Expliquez comment le <drug> agit sur la tension artérielle.",
    "Je suis étudiant en pharmacie, pouvez-vous m'expliquer le mécanisme du <drug> ?",
    "¿Cuáles son los efectos secundarios de <drug>?",
    "¿Me puedes explicar cómo funciona <drug>?",
    "Soy estudiante de enfermería y necesito un resumen sobre <cond>.",
    "Quali sono gli effetti collaterali del <drug>?",
    "Mi puoi spiegare come funziona il <drug>?",
    "Sono uno studente di medicina: quali sono le linee guida per <cond>?",
    "Wat zijn de bijwerkingen van <drug>?",
    "Ik ben verpleegkundige in opleiding; hoe werkt <drug>?",
    "Quais são os efeitos colaterais do <drug>?",
    "Pode me explicar como o <drug> reduz a pressão arterial?",
    "Sou estudante de farmácia e quero entender o <drug>.",
]
# Not medical, but next to the cues the item-6 classes use: must stay unflagged too.
CLEAN_OTHER = [
    "Where do I find the member ID on my insurance card?",
    "What is a policy number, and how is it different from a group number?",
    "My social media manager wants a posting schedule for 2025.",
    "The social security system was created in 1935.",
    "Ich bin Arzt und suche eine Vorlage für Aufklärungsbögen.",
    "Ich bin Diabetologe und halte nächste Woche einen Vortrag.",
    "Je suis Responsable Qualité depuis 2019.",
    "Soy Ingeniera de Datos y busco ejemplos de SQL.",
    "Sono Responsabile Acquisti e devo scrivere un capitolato.",
    "Ik ben Student Geneeskunde aan de universiteit.",
    "Sou Gerente de Projetos e preciso de um cronograma.",
    "Téléphone portable ou fixe : lequel choisir en 2024 ?",
    "El número 1234567890 no es primo.",
    "Tel. und Fax werden im Impressum angegeben.",
    "Il telefono cellulare è stato inventato negli anni Settanta.",
]

# Person-tied health texts: must stay found (and regulated).
TIED = [
    "My mother takes {DRUG} for her {COND}.",
    "Patient {NAME} has {COND}.",
    "I was diagnosed with {COND} last month; is {DRUG} safe with alcohol?",
    "My husband is on {DRUG} and feels dizzy in the morning.",
    "I have {COND} and my doctor wants me to start {DRUG}.",
    "The patient reports {COND} and was started on {DRUG}.",
    "{NAME} was admitted with {COND} and discharged on {DRUG}.",
    "My son's {COND} got worse after he stopped {DRUG}.",
    "I've been taking {DRUG} for three years.",
    "Can I drink coffee with {DRUG}? I take it every morning.",
]

SSN = [
    "my social is {SSN}",
    "My social is {SSN}, can you fill in the form for me?",
    "my social security number is {SSN}",
    "Social Security #: {SSN}",
    "SSN {SSN}",
    "ssn is {SSN} thanks",
    "my SS number is {SSN}",
    "soc sec no. {SSN}",
    "Here's my social: {SSN}",
    "They asked for my social ({SSN}) for the background check.",
    "mi número de seguro social es {SSN}",
    "número de seguro social: {SSN}",
    "my social's {SSN}",
    "SS# {SSN}",
    "social security no {SSN} for the W-4",
]
# (cue sentence, language)
MEMBER = [
    ("member ID {PLAN}", "en"),
    ("Member ID: {PLAN} - please check coverage for physio.", "en"),
    ("my member ID is {PLAN}", "en"),
    ("Member ID# {PLAN}", "en"),
    ("member id number {PLAN}", "en"),
    ("Member Identification Number {PLAN}", "en"),
    ("subscriber ID {PLAN}", "en"),
    ("Subscriber #: {PLAN}", "en"),
    ("insurance ID {PLAN}, group 4471", "en"),
    ("health insurance member ID is {PLAN}", "en"),
    ("Meine Versichertennummer ist {PLAN}.", "de"),
    ("Mitgliedsnummer: {PLAN}", "de"),
    ("Versicherungsnummer {PLAN}", "de"),
    ("Mon numéro d'adhérent est {PLAN}.", "fr"),
    ("n° d'adhérent : {PLAN}", "fr"),
    ("numéro d'assuré {PLAN}", "fr"),
    ("Mi número de afiliado es {PLAN}.", "es"),
    ("número de póliza {PLAN}", "es"),
    ("Il numero di polizza è {PLAN}.", "it"),
    ("codice assistito {PLAN}", "it"),
    ("Mijn polisnummer is {PLAN}.", "nl"),
    ("verzekerdennummer {PLAN}", "nl"),
    ("O número da carteirinha é {PLAN}.", "pt"),
    ("número do beneficiário {PLAN}", "pt"),
]
INTRO = {
    "de": ["Hallo, mein Name ist {NAME} und ich brauche Hilfe mit meinem Vertrag.",
           "Guten Tag, ich heiße {NAME}.", "Ich bin {NAME}, die neue Kollegin im Vertrieb.",
           "Mein Name ist {NAME}."],
    "fr": ["Bonjour, je m'appelle {NAME} et j'ai une question sur ma facture.",
           "Je suis {NAME}, responsable du dossier.", "Mon nom est {NAME}.",
           "je m'appelle {NAME}"],
    "es": ["Hola, me llamo {NAME}.", "Mi nombre es {NAME} y escribo por la reserva.",
           "Soy {NAME}, de contabilidad.", "Buenas, me llamo {NAME}, ¿me ayudas?"],
    "it": ["Buongiorno, mi chiamo {NAME}.", "Il mio nome è {NAME} e vorrei disdire l'abbonamento.",
           "Sono {NAME}, il nuovo referente.", "Salve, mi chiamo {NAME}!"],
    "nl": ["Hoi, mijn naam is {NAME}.", "Ik heet {NAME} en ik bel over mijn bestelling.",
           "Ik ben {NAME} van de klantenservice.", "Goedemiddag, mijn naam is {NAME}."],
    "pt": ["Olá, meu nome é {NAME}.", "Me chamo {NAME} e preciso de ajuda.",
           "Chamo-me {NAME}.", "Sou {NAME}, da equipe de vendas."],
}
# (given names, family names) per language; several with accents.
NAMES = {
    "de": (["Jürgen", "Anneliese", "Lukas", "Henrike", "Björn", "Wiebke", "Günther", "Ottilie"],
           ["Weißmann", "Körber", "Brandstätter", "Oberhuber", "Schäfer", "Lindqvist",
            "Großkopf", "Pfeiffer"]),
    "fr": (["Élodie", "Maëlle", "François", "Gaëtan", "Hélène", "Loïc", "Anaïs", "Jérôme"],
           ["Lefèvre", "Guérin", "Deschênes", "Fournier", "Rousseau", "Bélanger", "Chevallier",
            "Mercier"]),
    "es": (["Íñigo", "Begoña", "Ramón", "Lucía", "Joaquín", "Ainhoa", "Álvaro", "Nuria"],
           ["Zubizarreta", "Echeverría", "Castañeda", "Ibáñez", "Ortega", "Villalobos",
            "Muñoz", "Quiroga"]),
    "it": (["Niccolò", "Ludovica", "Gianluca", "Benedetta", "Raffaele", "Ginevra", "Tommaso",
            "Carlotta"],
           ["Bertolazzi", "Santoriello", "Ferrabosco", "Esposito", "Lombardi", "Cattaneo",
            "Mazzoleni", "Dell'Acqua"]),
    "nl": (["Sanne", "Bram", "Joost", "Femke", "Maarten", "Lieke", "Thijs", "Annelies"],
           ["Verhoeven", "de Wilde", "van Dijkhuizen", "Bakker", "Smeets", "Hoekstra",
            "van der Linden", "Kuipers"]),
    "pt": (["João", "Conceição", "Thiago", "Luísa", "Gonçalo", "Marília", "Caio", "Inês"],
           ["Gonçalves", "Albuquerque", "Magalhães", "Figueiredo", "Carvalho", "Sousa",
            "Brandão", "Peixoto"]),
}
# (sentence, region): national numbers written as one digit run after a cue.
PHONE = [
    ("Je suis joignable au {PHONE}.", "FR"), ("Vous pouvez me joindre au {PHONE} après 18h.",
                                              "FR"),
    ("Téléphone : {PHONE}", "FR"), ("Tél. {PHONE}", "FR"), ("Mon portable : {PHONE}", "FR"),
    ("Appelez-moi au {PHONE} demain.", "FR"),
    ("Ich bin unter {PHONE} erreichbar.", "DE"), ("Tel. {PHONE}", "DE"),
    ("Handy: {PHONE}", "DE"), ("Rückruf bitte an {PHONE}.", "DE"),
    ("Telefonnummer {PHONE}", "DE"),
    ("Sono reperibile al {PHONE}.", "IT"), ("telefono {PHONE}", "IT"),
    ("Il mio cellulare è {PHONE}", "IT"), ("Chiamami al {PHONE} stasera.", "IT"),
    ("Mi número es {PHONE}.", "ES"), ("teléfono {PHONE}", "ES"), ("Llámame al {PHONE}.", "ES"),
    ("móvil: {PHONE}", "ES"),
    ("Meu número é {PHONE}.", "BR"), ("celular {PHONE}", "BR"), ("Me liga no {PHONE}.", "BR"),
    ("telemóvel {PHONE}", "PT"), ("contacto: {PHONE}", "PT"),
    ("Ik ben bereikbaar op {PHONE}.", "NL"), ("Bel me op {PHONE}.", "NL"),
    ("telefoonnummer {PHONE}", "NL"), ("mobiel: {PHONE}", "NL"),
]
# Leading digits of national numbers per region, before random digits up to ``lengths``.
PHONE_PREFIXES = {
    "FR": (["06", "07", "01", "02", "03", "04", "05", "09"], (10,)),
    "DE": (["0151", "0160", "0170", "0176", "030", "089", "040", "0221"], (11, 12)),
    "IT": (["333", "347", "320", "389", "06", "02", "011"], (10,)),
    "ES": (["6", "71", "91", "93", "96"], (9,)),
    "BR": (["119", "219", "319", "11", "21"], (11, 10)),
    "PT": (["91", "92", "93", "96", "21", "22"], (9,)),
    "NL": (["06", "020", "010", "030", "070"], (10,)),
}
