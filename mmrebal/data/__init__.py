"""From cache rows to model inputs: loader settings and preloading, the batch loader, device transfer.

Below both the training engine and the evaluation pass, which read batches the same way.
"""
