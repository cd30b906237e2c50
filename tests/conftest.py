import torch as th

# Keep the suite quick on small CI machines (pytest-xdist runs one worker per core).
th.set_num_threads(1)
