"""Trainers for the shipped MNIST models (`glass train flow|classifier`)."""
