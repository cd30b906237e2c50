"""``python -m sb3_influence.zoo {train,enjoy,record_video,best-params} [args]``: the launcher's :func:`main`."""

from sb3_influence.zoo.launcher import main

if __name__ == "__main__":
    main()
