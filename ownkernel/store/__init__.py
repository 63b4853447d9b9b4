"""ownkernel.store"""
