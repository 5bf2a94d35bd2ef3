"""Word pools and sentence templates of the synthetic suite.

Fact templates and question templates are written as paraphrases of each other where that is natural
("What does X do for a living?" vs "I work as a nurse"), and filler templates reuse the same names,
cities, jobs, pets and hobbies without asserting anything, so lexical overlap alone is a weak signal.
No template ever contains a date: dates live only in an event's ``time``.
"""

from __future__ import annotations

FEMALE = ("Alice Beatrice Carmen Dana Elena Fiona Grace Hannah Irene Julia Keira Laura Maya Nadia Olivia Paula "
          "Quinn Rosa Sofia Tessa Uma Vera Wendy Yara Zoe Amira Clara Daphne Esther Greta Helena Ingrid "
          "Jasmine Leona Marta Noemi Petra Rania Selma Thea").split()
MALE = ("Aaron Bruno Caleb Diego Elliot Felix Gavin Hugo Ivan Jonah Kofi Liam Marco Nikolai Oscar Pavel "
        "Rafael Samir Tobias Umar Victor Wesley Xavier Yusuf Zane Anton Boris Cyrus Dmitri Emil Farid Gustav "
        "Henrik Idris Jasper Kenji Lucas Milo Nils Otto").split()
LAST = ("Abbott Barros Castillo Dalton Eriksen Fontaine Garza Holm Ibarra Jansen Kowalski Lindqvist Moreau "
        "Nakamura Okafor Petrov Quintero Rasmussen Silva Tanaka Ueda Varga Whitfield Xu Yilmaz Zelenko "
        "Arden Brandt Costa Duarte Ellison Falk Greer Hayes Iversen Jovanovic Keller Lund Mendez Novak "
        "Ortega Pike Quinlan Reyes Sato Thorne Underwood Vance Weber Young Ziegler Adair Baptiste Carver "
        "Dorsey Eberhardt Foley Galloway Hendrix").split()

JOBS = ("nurse pharmacist carpenter architect paramedic librarian chef electrician veterinarian plumber "
        "accountant dentist firefighter journalist photographer translator baker welder geologist pilot "
        "florist locksmith mechanic surveyor economist barista physiotherapist tailor lawyer teacher "
        "botanist cartographer sommelier radiologist brewer archivist").split()
CITIES = ("Lisbon Porto Vienna Prague Krakow Oslo Bergen Tallinn Riga Dublin Cork Lyon Marseille Seville "
          "Valencia Bologna Turin Zagreb Ljubljana Tbilisi Montreal Halifax Denver Austin Portland Tucson "
          "Savannah Boise Adelaide Hobart Wellington Osaka Sapporo Busan Hanoi Cusco Quito Oaxaca "
          "Antwerp Ghent").split()
PETS = ("cat dog parrot rabbit hamster tortoise ferret goldfish iguana hedgehog canary gecko").split()
PET_NAMES = ("Biscuit Pepper Mochi Ziggy Noodle Pickles Waffles Luna Clover Maple Pixel Otis Juniper Tofu "
             "Socks Pumpkin Bramble Cosmo Nugget Sprout Marble Fig Dumpling Ginger").split()
HOBBIES = ("rock climbing|knitting|birdwatching|woodworking|salsa dancing|chess|gardening|sailing|"
           "pottery|calligraphy|fencing|beekeeping|astronomy|kayaking|archery|origami|bouldering|"
           "playing the cello|baking sourdough|restoring old radios|trail running|painting watercolors|"
           "collecting vinyl records|brewing kombucha|learning Portuguese|surfing").split("|")
CAR_COLORS = ("red blue silver black white green grey yellow").split()
CARS = ("Volvo estate|Subaru Outback|Toyota Corolla|Fiat Panda|Honda Civic|Mazda Miata|Ford pickup|"
        "Tesla Model 3|Volkswagen camper van|Jeep Wrangler|Mini Cooper|Kia Niro|Nissan Leaf|Skoda Octavia|"
        "vintage Beetle|Peugeot 208").split("|")
# (answer, sentence tail): what someone did on the day of the session.
ACTIVITIES = (
    ("hiking", "went hiking up the ridge trail"), ("a pottery class", "took a pottery class"),
    ("a jazz concert", "caught a jazz concert downtown"), ("the dentist", "finally went to the dentist"),
    ("a half marathon", "ran a half marathon"), ("a cooking workshop", "did a cooking workshop"),
    ("volunteering at the food bank", "spent the day volunteering at the food bank"),
    ("painting the kitchen", "spent the whole day painting the kitchen"),
    ("a job interview", "had a job interview"), ("an escape room", "did an escape room with friends"),
    ("a farmers market", "wandered around a farmers market"), ("a kayak trip", "went on a kayak trip"),
    ("moving furniture", "helped a friend with moving furniture"), ("a wine tasting", "went to a wine tasting"),
    ("a museum visit", "spent hours on a museum visit"), ("a bike ride", "did a bike ride along the river"),
    ("a yoga retreat", "went to a yoga retreat"), ("a board game night", "hosted a board game night"),
    ("a football match", "watched a football match at the stadium"), ("a camping trip", "went on a camping trip"),
    ("a birthday party", "threw a birthday party"), ("a photography walk", "joined a photography walk"),
    ("a ski lesson", "took a ski lesson"), ("a comedy show", "saw a comedy show"),
)
# relation word for a female / male target, or one word for both.
RELATIONS = (("sister", "brother"), ("cousin", "cousin"), ("best friend", "best friend"),
             ("coworker", "coworker"), ("neighbour", "neighbour"), ("roommate", "roommate"),
             ("boss", "boss"), ("aunt", "uncle"))

# Fact sentences. {s}: the subject's name (third person, said by someone else); values by field name.
SELF = {
    "job": ("I work as a {job} these days, the hours are brutal but rewarding.",
            "Started my new job as a {job} this week, nervous but excited.",
            "Long shift today, being a {job} is no joke, feet are killing me."),
    "city": ("I live in {city}, the rent is awful and parking is worse.",
             "My apartment in {city} finally has working heating, what a relief.",
             "Home sweet home in {city}, love walking around my neighbourhood."),
    "pet": ("My {pet} {petname} chewed through a charging cable again.",
            "I adopted a {pet}, named it {petname}, sleeping on my pillow right now.",
            "{petname}, my {pet}, refuses to eat anything but the expensive food."),
    "hobby": ("I've gotten really into {hobby} lately, bought all the gear.",
              "Every weekend I make time for {hobby}, it keeps me sane.",
              "{hobby} has become my favourite way to unwind after work."),
    "car": ("I drive a {color} {car}, runs great despite the mileage.",
            "Just bought a {color} {car}, still smells new inside.",
            "My {color} {car} needs new tyres before winter arrives."),
}
SELF_UPDATE = {
    "job": ("I quit last month and now I'm a {job}, best decision ever made.",
            "Big news: I switched careers, I'm a {job} now, training went well."),
    "city": ("I moved to {city} last month, still unpacking boxes everywhere.",
             "Finally settled in {city} after the move, found a lovely cafe nearby."),
    "pet": ("We got a new {pet} called {petname}, brought it home yesterday evening.",),
    "hobby": ("I dropped my old hobby, it's all {hobby} now, every single evening.",),
    "car": ("Traded in my old car for a {color} {car}, smooth ride so far.",
            "Sold the old car, I drive a {color} {car} now, much better mileage."),
}
OTHER = {
    "job": ("{s} works as a {job} at a place across town and seems happy there.",
            "{s} got hired as a {job} downtown, first paycheck arrives soon.",
            "{s} has been a {job} for years, still loves the early shifts."),
    "city": ("{s} lives in {city} now, rents a tiny flat near the station.",
             "{s} has an apartment in {city}, right above a noisy bakery.",
             "{s} told me life in {city} is lovely, great weather all year."),
    "pet": ("{s} has a {pet} called {petname}, cutest thing ever seen.",
            "{s}'s {pet} {petname} keeps escaping the garden fence, hilarious."),
    "hobby": ("{s} spends every weekend on {hobby}, totally hooked lately.",
              "{s} is obsessed with {hobby}, talks about nothing else anymore."),
    "car": ("{s} drives a {color} {car}, bought second hand last spring.",
            "{s} picked up a {color} {car} from a dealer, great price apparently."),
}
OTHER_UPDATE = {
    "job": ("{s} switched careers and is a {job} now, big change after all those years.",
            "{s} left that old job, works as a {job} these days and earns more."),
    "city": ("{s} moved to {city} recently, packed everything into one van.",
             "{s} relocated to {city} for good, sold the old place already."),
    "pet": ("{s} adopted a {pet} called {petname}, brought it home from the shelter.",),
    "hobby": ("{s} gave up the old hobby and took up {hobby}, practising every evening.",),
    "car": ("{s} sold the old car and drives a {color} {car} now, much cheaper to run.",),
}
REL_SELF = ("My {rel} {t} is visiting next week, need to tidy the spare room.",
            "Had dinner with my {rel} {t} last night, great pasta place.",
            "My {rel} {t} says hello to everyone, sends love from afar.")
REL_OTHER = ("{s}'s {rel} is {t}, small world, never would have guessed.",
             "Turns out {t} is {s}'s {rel}, found out at the party.")
ACTIVITY = ("{a} this afternoon, so tired now, going to bed early.",
            "Today I {a}, totally worth it, though completely exhausted now.",
            "Guess what, I {a} today! Memorable experience, would repeat.")

# Questions. "current" variants are used for knowledge-update probes.
QUESTION = {
    "job": ("What does {s} do for a living?", "What is {s}'s profession?"),
    "city": ("Which city is {s} based in?", "Where is {s}'s home?"),
    "pet": ("What kind of animal does {s} keep as a pet?", "What species is {s}'s pet?"),
    "hobby": ("What does {s} like to do in spare time?", "Which pastime is {s} into?"),
    "car": ("What vehicle does {s} own?", "Which car model does {s} have?"),
}
QUESTION_NOW = {
    "job": ("What is {s}'s job at the moment?", "What does {s} currently work as?"),
    "city": ("Where does {s} live at present?", "Which city is {s} living in now?"),
    "pet": ("Which pet does {s} have most recently?",),
    "hobby": ("What is {s}'s current pastime?",),
    "car": ("What car does {s} drive these days?",),
}
QUESTION_TIME = ("What did {s} do on {d}?", "How did {s} spend {d}?", "What activity did {s} do on {d}?")

# Filler: small talk that shares the facts' vocabulary but asserts no fact. Slots: n (name), c (city),
# j (job), p (pet), h (hobby), v (car), a (activity answer).
FILLER = (
    ("Have you talked to {} lately?", "n"), ("{} says hi, by the way.", "n"),
    ("I keep meaning to call {} back.", "n"), ("Has {} ever been to {}?", "nc"),
    ("Do you think {} is worth a weekend trip?", "c"), ("The traffic in {} was in the news again.", "c"),
    ("A friend wants to become a {}, any advice?", "j"), ("Would {} make a good {}?", "nj"),
    ("Being a {} sounds exhausting honestly.", "j"), ("Someone at the park had the cutest {}.", "p"),
    ("Is a {} a lot of work to look after?", "p"), ("{} looks fun, I should try it sometime.", "h"),
    ("Did you see that {} parked outside?", "v"), ("Thinking about {} next weekend, we'll see.", "a"),
    ("Does {} still like {}?", "nh"), ("I read an article about {} in {}.", "hc"),
    ("lol yes", ""), ("haha true", ""), ("Sounds good!", ""), ("What are you up to this weekend?", ""),
    ("I'm so tired today.", ""), ("Same here.", ""), ("Let's catch up soon.", ""), ("No way, really?", ""),
    ("That reminds me, I need to buy groceries.", ""), ("Anyway, how was your week?", ""),
    ("Tell {} I said congrats.", "n"), ("We should plan something with {} soon.", "n"),
    ("The weather has been so strange lately.", ""), ("I can't believe it's almost the weekend again.", ""),
)
