"""Planted bugs in lab 0's `KVCacheSpec.bytes_per_token`."""

from minivllm.labs.mutants.base import Mutant

FILE = "minivllm/worker/cache_engine.py"
FORMULA = "return 2 * self.num_layers * self.num_kv_heads * self.head_dim * element"
ELEMENT = "element = torch.tensor([], dtype=self.dtype).element_size()"

MUTANTS = [
    Mutant("keys_only", "counts K but not V", FILE, FORMULA,
           "return self.num_layers * self.num_kv_heads * self.head_dim * element"),
    Mutant("one_layer", "forgets that every layer has its own cache", FILE, FORMULA,
           "return 2 * self.num_kv_heads * self.head_dim * element"),
    Mutant("fp32_only", "assumes 4 bytes per element", FILE, ELEMENT, "element = 4"),
    Mutant("half_only", "assumes 2 bytes per element (bf16)", FILE, ELEMENT, "element = 2"),
    Mutant("bits", "counts bits, not bytes", FILE, ELEMENT,
           "element = torch.finfo(self.dtype).bits"),
    Mutant("per_block", "multiplies by the block size (bytes per block, not per token)", FILE,
           FORMULA, FORMULA + " * self.block_size"),
    Mutant("float", "returns a float", FILE, FORMULA, FORMULA + " / 1"),
]
