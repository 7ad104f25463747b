"""Word lists of the ``lm`` grammar (see `lm.py`): five topics plus shared function words.

Every list is ordered by intended frequency: `lm.zipf` gives rank r the weight
1/(r+1). Some words deliberately occur in several topics (dog, bird, fish, pulls)
or have one form for singular and plural (sheep, deer, fish) or for present
plural and past (cut, read): the text then leaves the topic or the number
uncertain for a while, and the exact probabilities sum over those readings.
All words are lower-case ASCII letters, so the surface realisation is invertible.
"""
from __future__ import annotations

from dataclasses import dataclass

Noun = tuple[str, str]        # (singular, plural)
Verb = tuple[str, str, str]   # (present 3rd singular, present plural, past)


@dataclass(frozen=True)
class Topic:
    name: str
    agents: tuple[Noun, ...]      # subjects (and some objects)
    things: tuple[Noun, ...]      # objects
    places: tuple[str, ...]       # "near the <place>"
    intransitive: tuple[Verb, ...]
    transitive: tuple[Verb, ...]
    adjectives: tuple[str, ...]


@dataclass(frozen=True)
class Lexicon:
    topics: tuple[Topic, ...]
    intransitive: tuple[Verb, ...]   # shared by every topic
    transitive: tuple[Verb, ...]
    sizes: tuple[str, ...]
    colours: tuple[str, ...]
    adverbs: tuple[str, ...]
    prepositions: tuple[str, ...]
    det_sg: tuple[str, ...]
    det_pl: tuple[str, ...]
    pronoun_sg: str = "it"
    pronoun_pl: str = "they"


def _v(sg: str, pl: str, past: str) -> Verb:
    return (sg, pl, past)


FARM = Topic(
    "farm",
    agents=(("farmer", "farmers"), ("dog", "dogs"), ("cow", "cows"), ("sheep", "sheep"),
            ("horse", "horses"), ("hen", "hens"), ("goat", "goats"), ("pig", "pigs")),
    things=(("fence", "fences"), ("bucket", "buckets"), ("egg", "eggs"), ("apple", "apples"),
            ("tractor", "tractors"), ("gate", "gates")),
    places=("barn", "field", "meadow", "stable"),
    intransitive=(_v("grazes", "graze", "grazed"), _v("barks", "bark", "barked"),
                  _v("wanders", "wander", "wandered"), _v("digs", "dig", "dug")),
    transitive=(_v("feeds", "feed", "fed"), _v("chases", "chase", "chased"),
                _v("pulls", "pull", "pulled"), _v("carries", "carry", "carried")),
    adjectives=("hungry", "muddy", "lazy", "noisy"),
)

KITCHEN = Topic(
    "kitchen",
    agents=(("cook", "cooks"), ("baker", "bakers"), ("child", "children"), ("cat", "cats"),
            ("mouse", "mice"), ("chef", "chefs")),
    things=(("cake", "cakes"), ("pot", "pots"), ("spoon", "spoons"), ("knife", "knives"),
            ("fish", "fish"), ("bowl", "bowls"), ("plate", "plates")),
    places=("kitchen", "pantry", "bakery", "cellar"),
    intransitive=(_v("sings", "sing", "sang"), _v("laughs", "laugh", "laughed"),
                  _v("hurries", "hurry", "hurried"), _v("waits", "wait", "waited")),
    transitive=(_v("cooks", "cook", "cooked"), _v("cuts", "cut", "cut"), _v("bakes", "bake", "baked"),
                _v("tastes", "taste", "tasted"), _v("washes", "wash", "washed")),
    adjectives=("hot", "sweet", "sharp", "clean"),
)

FOREST = Topic(
    "forest",
    agents=(("fox", "foxes"), ("bear", "bears"), ("wolf", "wolves"), ("deer", "deer"),
            ("owl", "owls"), ("bird", "birds"), ("rabbit", "rabbits"), ("hunter", "hunters")),
    things=(("tree", "trees"), ("log", "logs"), ("berry", "berries"), ("nest", "nests"),
            ("stone", "stones"), ("mushroom", "mushrooms")),
    places=("forest", "woods", "cave", "valley"),
    intransitive=(_v("hides", "hide", "hid"), _v("howls", "howl", "howled"),
                  _v("climbs", "climb", "climbed"), _v("hunts", "hunt", "hunted")),
    transitive=(_v("finds", "find", "found"), _v("follows", "follow", "followed"),
                _v("watches", "watch", "watched"), _v("gathers", "gather", "gathered")),
    adjectives=("wild", "dark", "quiet", "tall"),
)

SEA = Topic(
    "sea",
    agents=(("sailor", "sailors"), ("fisherman", "fishermen"), ("captain", "captains"),
            ("fish", "fish"), ("whale", "whales"), ("seal", "seals"), ("crab", "crabs"), ("gull", "gulls")),
    things=(("boat", "boats"), ("net", "nets"), ("rope", "ropes"), ("shell", "shells"),
            ("anchor", "anchors"), ("wave", "waves")),
    places=("harbor", "beach", "bay", "island"),
    intransitive=(_v("swims", "swim", "swam"), _v("sails", "sail", "sailed"),
                  _v("dives", "dive", "dived"), _v("floats", "float", "floated")),
    transitive=(_v("catches", "catch", "caught"), _v("pulls", "pull", "pulled"),
                _v("ties", "tie", "tied"), _v("throws", "throw", "threw"), _v("fixes", "fix", "fixed")),
    adjectives=("wet", "salty", "calm", "stormy"),
)

CITY = Topic(
    "city",
    agents=(("driver", "drivers"), ("teacher", "teachers"), ("student", "students"), ("dog", "dogs"),
            ("doctor", "doctors"), ("man", "men"), ("woman", "women"), ("bird", "birds")),
    things=(("car", "cars"), ("bus", "buses"), ("book", "books"), ("bike", "bikes"),
            ("ticket", "tickets"), ("bag", "bags")),
    places=("station", "market", "park", "library"),
    intransitive=(_v("works", "work", "worked"), _v("talks", "talk", "talked"),
                  _v("shouts", "shout", "shouted"), _v("waits", "wait", "waited")),
    transitive=(_v("drives", "drive", "drove"), _v("reads", "read", "read"), _v("buys", "buy", "bought"),
                _v("sells", "sell", "sold"), _v("visits", "visit", "visited")),
    adjectives=("busy", "loud", "tired", "modern"),
)

LEXICON = Lexicon(
    topics=(FARM, KITCHEN, FOREST, SEA, CITY),
    intransitive=(_v("sleeps", "sleep", "slept"), _v("runs", "run", "ran"), _v("eats", "eat", "ate"),
                  _v("walks", "walk", "walked"), _v("sits", "sit", "sat"), _v("jumps", "jump", "jumped")),
    transitive=(_v("sees", "see", "saw"), _v("likes", "like", "liked"), _v("holds", "hold", "held"),
                _v("wants", "want", "wanted"), _v("moves", "move", "moved")),
    sizes=("small", "big", "old", "little", "young", "large", "tiny", "huge"),
    colours=("brown", "white", "black", "red", "grey", "green"),
    adverbs=("again", "quickly", "slowly", "often", "quietly", "happily", "early", "later"),
    prepositions=("near", "in", "behind", "beside", "outside"),
    det_sg=("the", "this", "my", "every", "our", "his", "her"),
    det_pl=("the", "some", "these", "my", "two", "many", "those", "our", "three", "his", "her"),
)

# A lexicon small enough that the tests can enumerate the whole language, yet with
# the same ambiguities: a noun shared by both topics with one form for both numbers,
# a verb with one form for present plural and past, a determiner for both numbers.
TINY_LEXICON = Lexicon(
    topics=(
        Topic("a", agents=(("sheep", "sheep"),), things=(("egg", "eggs"),), places=("barn",),
              intransitive=(_v("grazes", "graze", "grazed"),), transitive=(_v("cuts", "cut", "cut"),),
              adjectives=("muddy",)),
        Topic("b", agents=(("sheep", "sheep"), ("fox", "foxes")), things=(("log", "logs"),),
              places=("cave",), intransitive=(_v("hides", "hide", "hid"),),
              transitive=(_v("cuts", "cut", "cut"),), adjectives=("wild",)),
    ),
    intransitive=(_v("runs", "run", "ran"),),
    transitive=(_v("sees", "see", "saw"),),
    sizes=("big",), colours=("red",), adverbs=("often",), prepositions=("near",),
    det_sg=("the", "my"), det_pl=("the", "my", "two"),
)
