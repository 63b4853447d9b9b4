"""ownkernel.net"""
