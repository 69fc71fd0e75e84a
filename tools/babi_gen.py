#!/usr/bin/python3
"""bAbI-style question answering, SYNTHETIC by construction (as the original is): a small world
simulator (Weston et al. 2015, "Towards AI-complete question answering") and its file format.

World: actors (mary john daniel sandra), places (bathroom hallway kitchen office garden bedroom),
objects (football apple milk). Actions: go ("mary moved to the bathroom."), get ("john picked up the
apple.", only an object never placed or lying where the actor is), drop ("john
dropped the apple."). give is kept out: the three tasks below do not need it.
Tasks, each with its own story rules:
  qa1 single supporting fact   stories of moves; "Where is mary?" -> her place; support: her last move
  qa2 two supporting facts     moves, gets and drops; "Where is the apple?" -> the place of the actor
                               holding it (support: the get and that actor's last move) or where it was
                               dropped (support: the drop and the move that brought the actor there)
  qa6 yes/no questions         moves; "Is mary in the kitchen?" -> yes|no (half each); support: her
                               last move
Each story has 5 questions, each after 1-3 (qa1, qa6) or 2-6 (qa2, then more until some object has a known place) new statements; only actors with
a known place and objects with a known place are asked about.

File format (the original's, so real bAbI files can be dropped in): one line per sentence, `ID text`,
IDs restarting at 1 with each story; a question line is `ID question?<TAB>answer<TAB>support IDs`
(space-separated). OUT/qaN_train.txt and OUT/qaN_test.txt, --questions (default 1,000) each, from
random.Random(seed * 1000 + task * 10 + {train: 0, test: 1}): train and test are independent draws.

Labelled text (OUT/{train,valid,test}.tsv, all three tasks together, one line per question):
`answer<TAB>story tokens question tokens`, the story being every statement of the story before the
question; lower-cased, "." and "?" as tokens. valid = the questions of the last 10% of each task's
training stories, train = the rest; test = the test files.

usage: babi_gen.py [--seed 1] [--questions 1000] [--tasks 1,2,6] OUT_DIR
       babi_gen.py --convert QA_FILE.txt [...] -o OUT.tsv     (labelled text from bAbI files)
"""
import argparse
import os
import random
import sys

ACTORS = ["mary", "john", "daniel", "sandra"]
PLACES = ["bathroom", "hallway", "kitchen", "office", "garden", "bedroom"]
OBJECTS = ["football", "apple", "milk"]
MOVE = ["moved to", "went to", "journeyed to", "travelled to", "went back to"]
GET = ["picked up", "got", "grabbed", "took"]
DROP = ["dropped", "discarded", "put down", "left"]
QUESTIONS_PER_STORY = 5
TASKS = {1: "single supporting fact", 2: "two supporting facts", 6: "yes/no questions"}


class World:
    """State: place of each actor (with the ID of the move), holder or place of each object."""

    def __init__(self):
        self.at = {}        # actor -> (place, move ID)
        self.holder = {}    # object -> (actor, get ID)
        self.lying = {}     # object -> (place, drop ID, move ID that brought the dropper there)

    def where_object(self, o):
        """(place, sorted support IDs) or None if unknown."""
        if o in self.holder:
            a, gid = self.holder[o]
            if a not in self.at:
                return None
            place, mid = self.at[a]
            return place, sorted({gid, mid})
        if o in self.lying:
            place, did, mid = self.lying[o]
            return place, sorted({did, mid})
        return None


def story(rng, task):
    """[(text, None) | (question, (answer, [support IDs]))] for one story."""
    w, lines = World(), []
    for _ in range(QUESTIONS_PER_STORY):
        lo, hi = (2, 6) if task == 2 else (1, 3)
        for _ in range(rng.randint(lo, hi)):
            lines.append((statement(rng, w, task, len(lines) + 1), None))
        while task == 2 and not any(w.where_object(o) for o in OBJECTS):  # qa2 asks about objects only
            lines.append((statement(rng, w, task, len(lines) + 1), None))
        lines.append(question(rng, w, task))
    return lines


def statement(rng, w, task, sid):
    actions = ["go"]
    if task == 2:
        placed = [a for a in ACTORS if a in w.at]
        if placed and any(o not in w.holder for o in OBJECTS):
            actions += ["get", "get"]
        if w.holder:
            actions += ["drop"]
    act = rng.choice(actions)
    if act == "get":  # an actor can only pick up an object never seen or lying where they are
        a = rng.choice([x for x in ACTORS if x in w.at])
        here = [o for o in OBJECTS if o not in w.holder and (o not in w.lying or w.lying[o][0] == w.at[a][0])]
        act = "get" if here else "go"
    if act == "go":
        a = rng.choice(ACTORS)
        here = w.at.get(a, (None,))[0]
        p = rng.choice([x for x in PLACES if x != here])
        w.at[a] = (p, sid)
        return "%s %s the %s." % (a.capitalize(), rng.choice(MOVE), p)
    if act == "get":
        o = rng.choice(here)
        w.holder[o] = (a, sid)
        w.lying.pop(o, None)
        return "%s %s the %s." % (a.capitalize(), rng.choice(GET), o)
    o = rng.choice(sorted(w.holder))
    a, _ = w.holder.pop(o)
    place, mid = w.at[a]
    w.lying[o] = (place, sid, mid)
    return "%s %s the %s." % (a.capitalize(), rng.choice(DROP), o)


def question(rng, w, task):
    if task == 2:
        o = rng.choice([x for x in OBJECTS if w.where_object(x)])
        place, sup = w.where_object(o)
        return "Where is the %s?" % o, (place, sup)
    placed = sorted(w.at)
    a = rng.choice(placed)
    place, mid = w.at[a]
    if task == 6:
        ask = place if rng.random() < 0.5 else rng.choice([p for p in PLACES if p != place])
        return "Is %s in the %s?" % (a.capitalize(), ask), ("yes" if ask == place else "no", [mid])
    return "Where is %s?" % a.capitalize(), (place, [mid])


def generate(task, n_questions, seed):
    """bAbI-format text of stories holding n_questions questions."""
    rng = random.Random(seed)
    out, asked = [], 0
    while asked < n_questions:
        for i, (text, qa) in enumerate(story(rng, task), 1):
            if qa is None:
                out.append("%d %s" % (i, text))
            elif asked < n_questions:
                out.append("%d %s\t%s\t%s" % (i, text, qa[0], " ".join(map(str, qa[1]))))
                asked += 1
    return "\n".join(out) + "\n"


def tokens(sentence):
    return sentence.lower().replace(".", " .").replace("?", " ?").split()


def parse(text, where="input"):
    """bAbI text -> stories: [[(id, tokens, None) | (id, tokens, answer)]]; ValueError on bad lines."""
    stories = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        if not head.isdigit() or not rest:
            raise ValueError("%s line %d: expected `ID sentence`, got %r" % (where, n, line[:60]))
        sid = int(head)
        if sid == 1:
            stories.append([])
        elif not stories or sid != stories[-1][-1][0] + 1:
            raise ValueError("%s line %d: ID %d does not follow the previous line's" % (where, n, sid))
        parts = rest.split("\t")
        if len(parts) == 1:
            stories[-1].append((sid, tokens(parts[0]), None))
        elif len(parts) == 3 and parts[0].rstrip().endswith("?") and parts[1]:
            stories[-1].append((sid, tokens(parts[0]), parts[1]))
        else:
            raise ValueError("%s line %d: a question line is `ID question?<TAB>answer<TAB>support`" % (where, n))
    if not stories:
        raise ValueError("%s: no stories" % where)
    return stories


def labelled(stories):
    """`answer<TAB>story tokens question tokens` per question."""
    rows = []
    for st in stories:
        ctx = []
        for _, toks, ans in st:
            if ans is None:
                ctx += toks
            else:
                rows.append("%s\t%s" % (ans, " ".join(ctx + toks)))
    return rows


def write(path, text):
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--tasks", default="1,2,6")
    ap.add_argument("--convert", nargs="+", metavar="QA_FILE")
    ap.add_argument("-o", dest="output")
    a = ap.parse_args(argv)
    try:
        if a.convert:
            if not a.output:
                ap.error("--convert needs -o OUT.tsv")
            rows = []
            for p in a.convert:
                with open(p, encoding="utf-8") as f:
                    rows += labelled(parse(f.read(), p))
            write(a.output, "\n".join(rows) + "\n")
            print("%d questions -> %s" % (len(rows), a.output))
            return 0
        if not a.out:
            ap.error("OUT_DIR is required")
        tasks = [int(t) for t in a.tasks.split(",")]
        bad = [t for t in tasks if t not in TASKS]
        if bad or a.questions < 1:
            ap.error("--tasks takes %s; --questions must be positive" % ",".join(map(str, TASKS)))
        os.makedirs(a.out, exist_ok=True)
        split = {"train": [], "valid": [], "test": []}
        for t in tasks:
            for s, off in (("train", 0), ("test", 1)):
                text = generate(t, a.questions, a.seed * 1000 + t * 10 + off)
                write(os.path.join(a.out, "qa%d_%s.txt" % (t, s)), text)
                stories = parse(text)
                if s == "test":
                    split["test"] += labelled(stories)
                else:
                    nv = max(1, len(stories) // 10)
                    split["train"] += labelled(stories[:-nv])
                    split["valid"] += labelled(stories[-nv:])
            print("qa%d (%s): %d train / %d test questions" % (t, TASKS[t], a.questions, a.questions))
        for s, rows in split.items():
            write(os.path.join(a.out, s + ".tsv"), "\n".join(rows) + "\n")
        print("labelled text: %s -> %s/{train,valid,test}.tsv" %
              (", ".join("%d %s" % (len(r), s) for s, r in split.items()), a.out))
    except (OSError, ValueError) as e:
        print("babi_gen.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
