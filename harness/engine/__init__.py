"""What a method runs on: the run context, the method base class, settings and hyperparameters, the training
loop, evaluation, last-layer retraining, features and the stand-in pretraining.
"""
