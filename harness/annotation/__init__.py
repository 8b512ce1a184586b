"""A person in the loop: the annotation server and the Label Studio round trip.
"""
