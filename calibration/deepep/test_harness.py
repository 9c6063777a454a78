"""Checks of the harness's pure parts (no GPU): python3 -m unittest test_harness (in this folder)."""

import json
import os
import tempfile
import unittest

import cases
import measure_ll


def fake_trace(trials, mode, pre=0.0, settle=0.0):
    """Kernel events as the profiler would export them for `trials` trials."""
    ev, t = [], 0.0

    def k(name, dur):
        nonlocal t
        ev.append({"cat": "kernel", "name": name, "ts": t, "dur": dur})
        t += dur + 1.0

    for _ in range(trials):
        k("at::cuda::(anonymous namespace)::spin_kernel(long)", 2000)
        k("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 10)
        if pre:
            k("spin_kernel", pre)
        k("void deep_ep::internode_ll::dispatch<true, 3, 7168>(void*)", 30)
        if mode == "hook":
            if settle:
                k("spin_kernel", settle)
            k("void deep_ep::internode_ll::dispatch<true, 3, 7168>(void*)", 12)
        k("void deep_ep::internode_ll::combine<false, 7168, 11>(void*)", 40)
        if mode == "hook":
            if settle:
                k("spin_kernel", settle)
            k("void deep_ep::internode_ll::combine<false, 7168, 11>(void*)", 8)
    return {"traceEvents": ev}


class HarnessTests(unittest.TestCase):
    def test_routing_is_deterministic_and_well_formed(self):
        for c in cases.default_cases(2):
            for r in range(2):
                a = cases.routing_for(c, r, 2)
                self.assertEqual(a, cases.routing_for(c, r, 2))
                self.assertEqual(len(a), c.tokens[r])
                for experts in a:
                    self.assertEqual(len(set(experts)), cases.TOP_K)
                    self.assertTrue(all(0 <= e < cases.EXPERTS for e in experts))
        hot = cases.Case("x", "routing", (64, 64), routing="hot-rank")
        self.assertTrue(all(e >= 128 for t in cases.routing_for(hot, 0, 2) for e in t))
        local = cases.Case("x", "routing", (64, 64), routing="local")
        self.assertTrue(all(e < 128 for t in cases.routing_for(local, 0, 2) for e in t))
        counts = measure_ll.selection_counts(local, 1, 2)
        self.assertEqual(counts, {"sent_selections": 512, "sent_to_self": 512, "received_selections": 512, "received_from_self": 512})

    def test_split_trials_fused_and_hook(self):
        for mode, settle in (("fused", 0.0), ("hook", 300.0), ("hook", 0.0)):
            c = cases.Case("c", "delay", (8, 8), mode=mode, pre_us=(50.0, 0.0), settle_us=settle)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(fake_trace(3, mode, pre=50.0, settle=settle), f)
            trials = measure_ll.split_trials(measure_ll.kernel_events(f.name), measure_ll.RankCase(c, 0), 3)
            os.unlink(f.name)
            self.assertEqual(len(trials), 3)
            t = trials[1]
            self.assertEqual(t["pre_spin_us"], 50.0)
            if mode == "fused":
                self.assertEqual((t["dispatch_us"], t["combine_us"]), (30.0, 40.0))
                self.assertEqual(t["e2e_us"], 1 + 50 + 1 + 30 + 1 + 40)
            else:
                self.assertEqual((t["dispatch_send_us"], t["dispatch_recv_us"], t["combine_send_us"], t["combine_recv_us"]), (30, 12, 40, 8))
                gap = (settle + 1) if settle else 0
                self.assertEqual(t["e2e_us"], 1 + 50 + 1 + 30 + 1 + gap + 12 + 1 + 40 + 1 + gap + 8)

    def test_split_trials_rejects_a_missing_kernel(self):
        c = cases.Case("c", "balanced", (8, 8))
        trace = fake_trace(2, "fused")
        trace["traceEvents"] = [e for i, e in enumerate(trace["traceEvents"]) if i != 2]  # first dispatch gone
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(trace, f)
        with self.assertRaises(RuntimeError):
            measure_ll.split_trials(measure_ll.kernel_events(f.name), measure_ll.RankCase(c, 0), 2)
        os.unlink(f.name)

    def test_percentile(self):
        self.assertEqual(measure_ll.percentile([3.0, 1.0, 2.0], 50), 2.0)
        self.assertEqual(measure_ll.percentile([1.0, 2.0], 10), 1.1)


if __name__ == "__main__":
    unittest.main()
