"""ownkernel.kernel"""
