// SAE kernels (filled in by the SAE work).
