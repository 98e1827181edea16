"""What each task maps and retrieves: the words the report and the data card use for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    question: str  # what the model is given
    answer: str  # what it must point at
    kept_whole: str  # what the split never divides (no leak between train and test)
    csls: bool = False  # also rank by CSLS, as this task's reference benchmarks do (MUSE, VecMap)


TASKS = {
    "dialogue": Task("a conversational turn", "the next turn, among the split's distinct next turns",
                     "every pair of one normalised question"),
    "translation": Task("a German (or French) word, from FreeDict", "its English translation, among the split's "
                        "distinct English targets", "every word whose English target has the same lemma "
                        "(inflections and synonyms of a target); inflected source headwords are dropped", csls=True),
    "reverse_dictionary": Task("a WordNet definition", "the word it defines, among the split's distinct headwords",
                               "every definition of words with the same lemma (all senses of a word)"),
}
