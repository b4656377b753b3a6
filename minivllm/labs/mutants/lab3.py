"""Planted bugs in lab 3's `ContinuousScheduler._schedule`."""

from minivllm.labs.mutants.base import Mutant

FILE = "minivllm/core/scheduler.py"
ADMIT = "while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:"

MUTANTS = [
    Mutant("preempted_keeps_blocks", "a preempted sequence keeps its KV blocks", FILE,
           "                victim = self.running.pop()\n"
           "                self._preempt(victim, out)\n"
           "                if victim is seq:\n"
           "                    break\n"
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:",
           "                victim = self.running.pop()\n"
           "                victim.num_computed_tokens = 0\n"
           "                victim.status = SequenceStatus.PREEMPTED\n"
           "                self.waiting.appendleft(victim)\n"
           "                out.preempted.append(victim)\n"
           "                if victim is seq:\n"
           "                    break\n"
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:"),
    Mutant("ignores_max_num_seqs", "admission ignores max_num_seqs", FILE, ADMIT,
           "while self.waiting and budget > 0:"),
    Mutant("not_fcfs", "a later request that fits jumps ahead of one that does not", FILE,
           "            seq = self.waiting[0]\n"
           "            n = self._num_tokens_to_run(seq, budget)\n"
           "            if n == 0 or not self.kv_cache_manager.allocate_slots(seq, n):\n"
           "                break\n"
           "            self.waiting.popleft()\n"
           "            seq.status = SequenceStatus.RUNNING\n"
           "            self.running.append(seq)\n"
           "            out.scheduled.append(ScheduledSequence(seq, n))\n"
           "            budget -= n\n"
           "        return out",
           "            for seq in self.waiting:\n"
           "                n = self._num_tokens_to_run(seq, budget)\n"
           "                if n and self.kv_cache_manager.allocate_slots(seq, n):\n"
           "                    break\n"
           "            else:\n"
           "                break\n"
           "            self.waiting.remove(seq)\n"
           "            seq.status = SequenceStatus.RUNNING\n"
           "            self.running.append(seq)\n"
           "            out.scheduled.append(ScheduledSequence(seq, n))\n"
           "            budget -= n\n"
           "        return out"),
    Mutant("admits_despite_preemption", "admits waiting sequences in a step that preempted",
           FILE, "        if out.preempted:\n            return out\n        " + ADMIT,
           "        " + ADMIT),
    Mutant("budget_ignored_on_admission", "admission does not spend the token budget", FILE,
           "            out.scheduled.append(ScheduledSequence(seq, n))\n"
           "            budget -= n\n"
           "        return out\n"
           "        # END SOLUTION",
           "            out.scheduled.append(ScheduledSequence(seq, n))\n"
           "        return out\n"
           "        # END SOLUTION"),
    Mutant("budget_ignored_when_running", "running sequences do not spend the token budget",
           FILE,
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:",
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "\n"
           "        if out.preempted:"),
    Mutant("preempts_oldest", "preempts the oldest running sequence instead of the newest",
           FILE,
           "                victim = self.running.pop()\n"
           "                self._preempt(victim, out)\n"
           "                if victim is seq:\n"
           "                    break\n"
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:",
           "                victim = self.running.pop(0)\n"
           "                self._preempt(victim, out)\n"
           "                if victim is seq:\n"
           "                    break\n"
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:"),
    Mutant("waiting_before_running", "admits waiting sequences before serving running ones",
           FILE,
           "        for seq in list(self.running):\n"
           "            if seq.status != SequenceStatus.RUNNING:  # preempted below, to make room\n"
           "                continue\n"
           "            n = self._num_tokens_to_run(seq, budget)\n"
           "            if n == 0:\n"
           "                continue\n"
           "            while not self.kv_cache_manager.allocate_slots(seq, n):\n"
           "                victim = self.running.pop()\n"
           "                self._preempt(victim, out)\n"
           "                if victim is seq:\n"
           "                    break\n"
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:",
           "        running_before = list(self.running)\n"
           "        while self.waiting and len(self.running) < self.max_num_seqs:\n"
           "            seq = self.waiting[0]\n"
           "            n = self._num_tokens_to_run(seq, budget)\n"
           "            if n == 0 or not self.kv_cache_manager.allocate_slots(seq, n):\n"
           "                break\n"
           "            self.waiting.popleft()\n"
           "            seq.status = SequenceStatus.RUNNING\n"
           "            self.running.append(seq)\n"
           "            out.scheduled.append(ScheduledSequence(seq, n))\n"
           "            budget -= n\n"
           "        for seq in running_before:\n"
           "            if seq.status != SequenceStatus.RUNNING:\n"
           "                continue\n"
           "            n = self._num_tokens_to_run(seq, budget)\n"
           "            if n == 0:\n"
           "                continue\n"
           "            while not self.kv_cache_manager.allocate_slots(seq, n):\n"
           "                victim = self.running.pop()\n"
           "                self._preempt(victim, out)\n"
           "                if victim is seq:\n"
           "                    break\n"
           "            else:\n"
           "                out.scheduled.append(ScheduledSequence(seq, n))\n"
           "                budget -= n\n"
           "\n"
           "        if out.preempted:"),
]
