"""SLIM (Xuan et al., ECCV 2024): spuriousness mitigation with minimal human annotations."""
