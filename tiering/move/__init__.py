"""The copy -> verify -> delete engine, both directions. One run of ``move()``:

1. lock the model and direction (``locks``), then repair half-done batches of earlier runs (``repair``);
2. select the next batch of eligible keys in key order, the cutoff fixed for the run (``selection``,
   ``batch``), and record its keys in the ledger before any copy (``ledger``);
3. copy parents, then children, into the target, leaving keys already there alone (``paths``);
4. verify the copies against the source; what differs is copied again once, then left in the source;
5. delete from the source with the policy re-checked: a row changed meanwhile stays where it is;
6. record the batch DONE, to cold in the source's delete transaction; a restore's copies commit in hot
   with their VERIFIED mark, and restored rows get a mark that keeps them hot (``restore``).

A crash at any step and a rerun leave every row in exactly one tier. A run with nothing to do (no
eligible row selected, nothing half-done to settle: ``has_work``) records nothing in the ledger.
``paths.base`` states what each copy path must do; ``faults`` holds the crash points the SIGKILL tests use.
"""
from ..exceptions import LockHeld, MoveError
from .batch import MoveProgress
from .locks import held_lock
from .run import MovePlan, choose_path, finish_run, has_work, move, plan, promote, resumable_run, start_run

__all__ = ["LockHeld", "MoveError", "MovePlan", "MoveProgress", "choose_path", "finish_run", "has_work", "held_lock",
           "move", "plan", "promote", "resumable_run", "start_run"]
